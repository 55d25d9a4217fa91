// Rope and the KV append of one decoder layer's fused projection in one pass. qkv [T, R * d] holds
// per token the heads' q, then the kv heads' k, then their v (R = heads + 2 kvHeads): q is rotated
// into q_out [T, heads, d]; k rotated and v as is go to the cache ([kvHeads, maxSeq, d] at
// positions start + t, as kv-append.wgsl writes them). One thread per pair of neighbouring elements
// of one head row, so an f16 cache word (two halves) has one writer. Each element is rotated by
// rope.wgsl's own expressions and rounded by kv-append.wgsl's toHalf, so the cache and q hold
// exactly what the separate rope and append passes would write. Qwen3 and Gemma 3 norm each head
// of q and k before rope: head_setup / head_value (rope_append_norm.wgsl) give each thread its
// head's RMSNorm; rope_append_plain.wgsl reads the values as they are.
// cos_sin: rope_angle.wgsl; toHalf: f16_round.wgsl; head_*: one of the two above (all prepended).

struct Params {
  n: u32,       // T * R * d/2
  heads: u32,
  kvHeads: u32,
  half: u32,    // d/2
  maxSeq: u32,
  start: u32,
  eps: f32,     // the per-head norms' epsilon
}

override WG: u32 = 256;
override F16: bool = false;

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> kCache: array<u32>;
@group(0) @binding(5) var<storage, read_write> vCache: array<u32>;
@group(0) @binding(6) var<uniform> params: Params;

// Element e of the head row at `base`, rotated by position pos (rope.wgsl's pair and rotate).
fn rotated(base: u32, e: u32, pos: u32) -> f32 {
  let j = e % params.half;
  // max() keeps the product a separate, rounded f32, as rope.wgsl does.
  let cs = cos_sin(max(f32(pos) * inv_freq[j], 0.0));
  let a = head_value(base, j);
  let b = head_value(base, j + params.half);
  if (e < params.half) {
    return a * cs.x - b * cs.y;
  }
  return b * cs.x + a * cs.y;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WG;
  if (i >= params.n) {
    return;
  }
  let d = 2u * params.half;
  let rowsPerToken = params.heads + 2u * params.kvHeads;
  let w = i % params.half;
  let r = (i / params.half) % rowsPerToken;
  let t = i / (params.half * rowsPerToken);
  let base = (t * rowsPerToken + r) * d;
  let e = 2u * w;
  let pos = positions[t];
  if (r < params.heads) {
    head_setup(base, true);
    let o = (t * params.heads + r) * d + e;
    q_out[o] = rotated(base, e, pos);
    q_out[o + 1u] = rotated(base, e + 1u, pos);
    return;
  }
  let isK = r < params.heads + params.kvHeads;
  let h = select(r - params.heads - params.kvHeads, r - params.heads, isK);
  var v0 = qkv[base + e];
  var v1 = qkv[base + e + 1u];
  if (isK) {
    head_setup(base, false);
    v0 = rotated(base, e, pos);
    v1 = rotated(base, e + 1u, pos);
  }
  let row = h * params.maxSeq + params.start + t;
  if (F16) {
    let word = toHalf(bitcast<u32>(v0)) | (toHalf(bitcast<u32>(v1)) << 16u);
    if (isK) {
      kCache[row * params.half + w] = word;
    } else {
      vCache[row * params.half + w] = word;
    }
    return;
  }
  if (isK) {
    kCache[row * d + e] = bitcast<u32>(v0);
    kCache[row * d + e + 1u] = bitcast<u32>(v1);
  } else {
    vCache[row * d + e] = bitcast<u32>(v0);
    vCache[row * d + e + 1u] = bitcast<u32>(v1);
  }
}
