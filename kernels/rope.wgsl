// Rotary position embedding, Hugging Face rotate-half convention, on x [T, heads, d]:
// for i < d/2, angle = pos * inv_freq[i] (an f32 product, as in HF),
//   out[i] = x[i] cos - x[i + d/2] sin,   out[i + d/2] = x[i + d/2] cos + x[i] sin.
// One thread per (token, head, i) pair; it reads both elements before writing them, so the
// in-place entry point is race-free. `out` comes first so in_place binds only what it uses.
// cos_sin: rope_angle.wgsl, prepended.

struct Params {
  n: u32,     // T * heads * d/2
  heads: u32,
  half: u32,  // d/2
}

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;

struct Pair {
  lo: u32, // index of x[i]
  hi: u32, // index of x[i + d/2]
  cs: vec2f,
}

fn pair(i: u32) -> Pair {
  let j = i % params.half;
  let row = i / params.half; // token * heads + head
  let pos = positions[row / params.heads];
  // max() keeps the product a separate, rounded f32 as in HF: a compiler may not fuse it into
  // the reduction's subtraction (an fma would skip that rounding, moving the angle by up to half
  // an ulp, 2.4e-4 rad at 8000).
  let angle = max(f32(pos) * inv_freq[j], 0.0);
  let lo = row * 2u * params.half + j;
  return Pair(lo, lo + params.half, cos_sin(angle));
}

fn rotate(a: f32, b: f32, cs: vec2f) -> vec2f {
  return vec2f(a * cs.x - b * cs.y, b * cs.x + a * cs.y);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WG;
  if (i >= params.n) {
    return;
  }
  let p = pair(i);
  let v = rotate(x[p.lo], x[p.hi], p.cs);
  out[p.lo] = v.x;
  out[p.hi] = v.y;
}

@compute @workgroup_size(WG)
fn in_place(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WG;
  if (i >= params.n) {
    return;
  }
  let p = pair(i);
  let v = rotate(out[p.lo], out[p.hi], p.cs);
  out[p.lo] = v.x;
  out[p.hi] = v.y;
}
