// out[i] = a[i] + b[i % bLen]: residual add (bLen = n) and bias add over rows (bLen = columns).

struct Params {
  n: u32,
  bLen: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  // 2-D grid so more than 65535 * WG elements can be covered.
  let i = gid.x + gid.y * groups.x * WG;
  if (i >= params.n) {
    return;
  }
  out[i] = a[i] + b[i % params.bLen];
}
