// f32 <-> f16 (two halves packed per u32, low half first). Both sides are raw words so one module
// serves both directions without aliased bindings. Non-finite values are handled on the bits:
// WGSL leaves pack/unpack of out-of-range or non-finite values indeterminate.

struct Params {
  n: u32, // elements
}

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

// IEEE round-to-nearest: |v| >= 65520 overflows to infinity, (65504, 65520) rounds down to 65504.
fn to_half(bits: u32) -> u32 {
  let sign = (bits >> 16u) & 0x8000u;
  let mag = bits & 0x7fffffffu;
  if (mag > 0x7f800000u) {
    return sign | 0x7e00u; // NaN stays a (quiet) NaN
  }
  if (mag >= 0x477ff000u) {
    return sign | 0x7c00u;
  }
  let v = clamp(bitcast<f32>(bits), -65504.0, 65504.0);
  return pack2x16float(vec2f(v, 0.0)) & 0xffffu;
}

fn to_f32_bits(word: u32, hi: bool) -> u32 {
  let h = select(word & 0xffffu, word >> 16u, hi);
  if ((h & 0x7c00u) == 0x7c00u) {
    return ((h & 0x8000u) << 16u) | 0x7f800000u | ((h & 0x3ffu) << 13u); // infinity, NaN
  }
  let pair = unpack2x16float(word);
  return bitcast<u32>(select(pair.x, pair.y, hi));
}

// One thread per output word (two halves).
@compute @workgroup_size(WG)
fn to_f16(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let w = gid.x + gid.y * groups.x * WG;
  let i = 2u * w;
  if (i >= params.n) {
    return;
  }
  var word = to_half(src[i]);
  if (i + 1u < params.n) {
    word |= to_half(src[i + 1u]) << 16u;
  }
  dst[w] = word;
}

// One thread per output element.
@compute @workgroup_size(WG)
fn to_f32(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WG;
  if (i >= params.n) {
    return;
  }
  dst[i] = to_f32_bits(src[i >> 1u], (i & 1u) == 1u);
}
