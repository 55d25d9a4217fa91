// RMSNorm (Hugging Face LlamaRMSNorm): out = x / sqrt(mean(x^2) + eps) * weight, per row.
// One workgroup per row; each thread strides over the row, then a shared-memory tree reduction.
// add_main adds a residual to the normed row (Gemma 2's norms after attention and the MLP, then
// the residual add, in one pass): out = residual + norm(x), the add's own order.

struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
}

override WG: u32 = 256; // a power of two (tree reduction)

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<storage, read> residual: array<f32>;

var<workgroup> partial: array<f32, WG>;

// The row's scale, by every thread of the workgroup (row is uniform per workgroup).
fn row_scale(base: u32, lid: u32) -> f32 {
  var sum = 0.0;
  for (var c = lid; c < params.cols; c += WG) {
    let v = x[base + c];
    sum += v * v;
  }
  partial[lid] = sum;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  return inverseSqrt(partial[0] / f32(params.cols) + params.eps);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u, @builtin(local_invocation_index) lid: u32) {
  // Rows fold into a 2-D grid past the per-dimension cap; the test is uniform per workgroup.
  let row = wid.x + wid.y * groups.x;
  if (row >= params.rows) {
    return;
  }
  let base = row * params.cols;
  let scale = row_scale(base, lid);
  for (var c = lid; c < params.cols; c += WG) {
    out[base + c] = x[base + c] * scale * weight[c];
  }
}

@compute @workgroup_size(WG)
fn add_main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * groups.x;
  if (row >= params.rows) {
    return;
  }
  let base = row * params.cols;
  let scale = row_scale(base, lid);
  for (var c = lid; c < params.cols; c += WG) {
    out[base + c] = residual[base + c] + x[base + c] * scale * weight[c];
  }
}
