// Row softmax over [R, C]: subtract the row max, exponentiate, divide by the sum.
// One workgroup per row. The exponentials are written to `out` in the second pass and scaled in
// the third, so each thread only rereads elements it wrote: `in_place` (x is out) is race-free.
// `out` comes first so in_place binds only what it uses.

struct Params {
  rows: u32,
  cols: u32,
}

override WG: u32 = 256; // a power of two (tree reduction)

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;

var<workgroup> partial: array<f32, WG>;

const LOWEST = -0x1.fffffep+127f; // -FLT_MAX

fn workgroup_max(lid: u32, value: f32) -> f32 {
  partial[lid] = value;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      partial[lid] = max(partial[lid], partial[lid + stride]);
    }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier(); // partial is reused by the next reduction
  return total;
}

fn workgroup_sum(lid: u32, value: f32) -> f32 {
  partial[lid] = value;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  return partial[0];
}

// Third pass: out holds exp(x - max); divide by the row sum (>= 1: the max contributes exp(0)).
fn scale_row(base: u32, lid: u32, sum: f32) {
  let inv = 1.0 / sum;
  for (var c = lid; c < params.cols; c += WG) {
    out[base + c] *= inv;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * groups.x; // uniform per workgroup
  if (row >= params.rows) {
    return;
  }
  let base = row * params.cols;
  var m = LOWEST;
  for (var c = lid; c < params.cols; c += WG) {
    m = max(m, x[base + c]);
  }
  m = workgroup_max(lid, m);
  var sum = 0.0;
  for (var c = lid; c < params.cols; c += WG) {
    let e = exp(x[base + c] - m);
    out[base + c] = e;
    sum += e;
  }
  scale_row(base, lid, workgroup_sum(lid, sum));
}

@compute @workgroup_size(WG)
fn in_place(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * groups.x;
  if (row >= params.rows) {
    return;
  }
  let base = row * params.cols;
  var m = LOWEST;
  for (var c = lid; c < params.cols; c += WG) {
    m = max(m, out[base + c]);
  }
  m = workgroup_max(lid, m);
  var sum = 0.0;
  for (var c = lid; c < params.cols; c += WG) {
    let e = exp(out[base + c] - m);
    out[base + c] = e;
    sum += e;
  }
  scale_row(base, lid, workgroup_sum(lid, sum));
}
