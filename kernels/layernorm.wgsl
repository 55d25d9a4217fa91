// LayerNorm (GPT-2): out = (x - mean) / sqrt(var + eps) * gamma + beta, biased variance, per row.
// One workgroup per row. Two passes (mean, then squared deviations) so a large mean does not
// cancel the variance, as E[x^2] - E[x]^2 would.

struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
}

override WG: u32 = 256; // a power of two (tree reduction)

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

var<workgroup> partial: array<f32, WG>;

// Sum of every thread's value; all threads get the total.
fn workgroup_sum(lid: u32, value: f32) -> f32 {
  partial[lid] = value;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier(); // partial is reused by the next call
  return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * groups.x;
  if (row >= params.rows) {
    return;
  }
  let base = row * params.cols;
  let n = f32(params.cols);
  var sum = 0.0;
  for (var c = lid; c < params.cols; c += WG) {
    sum += x[base + c];
  }
  let mean = workgroup_sum(lid, sum) / n;
  var dev = 0.0;
  for (var c = lid; c < params.cols; c += WG) {
    let d = x[base + c] - mean;
    dev += d * d;
  }
  let scale = inverseSqrt(workgroup_sum(lid, dev) / n + params.eps);
  for (var c = lid; c < params.cols; c += WG) {
    out[base + c] = (x[base + c] - mean) * scale * gamma[c] + beta[c];
  }
}
