// Row argmax over [R, C] -> u32 [R]: the lowest index of the largest value. NaN never wins; a row
// of only NaN gives 0. One workgroup per row, then a tree reduction of (value, index) pairs.

struct Params {
  rows: u32,
  cols: u32,
}

override WG: u32 = 256; // a power of two (tree reduction)

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;

const NONE = 0xffffffffu;

// On the bits, so no compiler assumption about NaN comparisons can drop the test.
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// (v, i) beats (bv, bi): a larger value, or the same value at a lower index.
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  if (i == NONE) {
    return false;
  }
  return bi == NONE || v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * groups.x; // uniform per workgroup
  if (row >= params.rows) {
    return;
  }
  let base = row * params.cols;
  // Each thread visits increasing indices, so a strict > keeps its lowest index on ties.
  var bv = 0.0;
  var bi = NONE;
  for (var c = lid; c < params.cols; c += WG) {
    let v = x[base + c];
    if (!is_nan(v) && (bi == NONE || v > bv)) {
      bv = v;
      bi = c;
    }
  }
  best_value[lid] = bv;
  best_index[lid] = bi;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride && beats(best_value[lid + stride], best_index[lid + stride], best_value[lid], best_index[lid])) {
      best_value[lid] = best_value[lid + stride];
      best_index[lid] = best_index[lid + stride];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    out[row] = select(best_index[0], 0u, best_index[0] == NONE);
  }
}
