// Copies T new rows of k and v ([T, kvHeads, headDim], token-major as projected) into the cache
// ([kvHeads, maxSeq, headDim], head-major so one head's keys are contiguous for attention) at
// positions start .. start + T - 1. One thread per cache word: an f32 element, or with F16 a pair
// of halves (each row padded to a whole word, so no two threads share one).
// Values move as bits (u32 bindings): f32 is copied exactly, f16 rounded by toHalf, never by the
// adapter's own conversion, whose rounding WGSL leaves open (toHalf: f16_round.wgsl, prepended).

struct Params {
  n: u32,        // words to write: T * kvHeads * words per row
  kvHeads: u32,
  headDim: u32,
  maxSeq: u32,
  start: u32,
}

override WG: u32 = 256;
override F16: bool = false;

@group(0) @binding(0) var<storage, read> kNew: array<u32>;
@group(0) @binding(1) var<storage, read> vNew: array<u32>;
@group(0) @binding(2) var<storage, read_write> kCache: array<u32>;
@group(0) @binding(3) var<storage, read_write> vCache: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WG;
  if (i >= params.n) {
    return;
  }
  // Words per cached row.
  let rw = select(params.headDim, (params.headDim + 1u) / 2u, F16);
  let w = i % rw;
  let row = i / rw;
  let head = row % params.kvHeads;
  let t = row / params.kvHeads;
  let dst = (head * params.maxSeq + params.start + t) * rw + w;
  if (!F16) {
    kCache[dst] = kNew[i];
    vCache[dst] = vNew[i];
    return;
  }
  let d = 2u * w;
  let src = row * params.headDim + d;
  var k = toHalf(kNew[src]);
  var v = toHalf(vNew[src]);
  if (d + 1u < params.headDim) {
    k |= toHalf(kNew[src + 1u]) << 16u;
    v |= toHalf(vNew[src + 1u]) << 16u;
  }
  kCache[dst] = k;
  vCache[dst] = v;
}
