// Copies T new rows of k and v ([T, kvHeads, headDim], token-major as projected) into the cache
// ([kvHeads, maxSeq, headDim], head-major so one head's keys are contiguous for attention) at
// positions start .. start + T - 1.

struct Params {
  n: u32,
  kvHeads: u32,
  headDim: u32,
  maxSeq: u32,
  start: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read> kNew: array<f32>;
@group(0) @binding(1) var<storage, read> vNew: array<f32>;
@group(0) @binding(2) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(3) var<storage, read_write> vCache: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WG;
  if (i >= params.n) {
    return;
  }
  let d = i % params.headDim;
  let row = i / params.headDim;
  let head = row % params.kvHeads;
  let t = row / params.kvHeads;
  let dst = (head * params.maxSeq + params.start + t) * params.headDim + d;
  kCache[dst] = kNew[i];
  vCache[dst] = vNew[i];
}
