// matmul.wgsl snippet for GGML-quantized weights (two planes, see tensor.ts GGML_PLANES): load_w4
// decodes four consecutive k of a row (k % 4 == 0, so never across a block) while the tile is
// staged, so each weight of a tile is dequantized once and then reused by every row of x in it.
// Values equal ggml-quants.ts dequantizeGgml bit for bit: each product is exact or rounded once,
// as there.

alias T = f32;

override FORMAT: u32 = 0;

const Q8_0 = 0u;
const Q4_0 = 1u;
const Q4_K = 2u;
const Q5_0 = 4u;

@group(0) @binding(3) var<storage, read> w: array<u32>;
// The meta plane (`meta` is reserved in WGSL): f16 pairs of d (Q8_0, Q4_0, Q6_K), four words per block (Q4_K),
// three halves d, qh low, qh high per block (Q5_0).
@group(0) @binding(4) var<storage, read> extra: array<u32>;

const BYTES = vec4<u32>(0u, 8u, 16u, 24u);

fn half_at(i: u32) -> f32 {
  return unpack2x16float(extra[i >> 1u])[i & 1u];
}

fn byte_at(word: u32, j: u32) -> u32 {
  return (word >> (8u * j)) & 255u;
}

// Block b, elements j .. j + 3 of it.
fn q8_0_w4(b: u32, j: u32) -> vec4<f32> {
  let v = w[8u * b + j / 4u];
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) << (24u - BYTES)) >> vec4<u32>(24u)) * half_at(b);
}

fn q4_0_w4(b: u32, j: u32) -> vec4<f32> {
  // Element j < 16 is the low nibble of byte j, j >= 16 the high nibble of byte j - 16.
  let v = w[4u * b + (j % 16u) / 4u];
  let q = (vec4<u32>(v) >> (BYTES + 4u * (j / 16u))) & vec4<u32>(15u);
  return (vec4<f32>(q) - 8.0) * half_at(b);
}

fn q5_0_w4(b: u32, j: u32) -> vec4<f32> {
  // Nibbles as Q4_0; bit j of qh (halves 3b + 1 and 3b + 2) is the fifth bit of element j.
  let v = w[4u * b + (j % 16u) / 4u];
  let q = (vec4<u32>(v) >> (BYTES + 4u * (j / 16u))) & vec4<u32>(15u);
  let lo = (extra[(3u * b + 1u) >> 1u] >> (16u * ((3u * b + 1u) & 1u))) & 0xffffu;
  let hi = (extra[(3u * b + 2u) >> 1u] >> (16u * ((3u * b + 2u) & 1u))) & 0xffffu;
  let h = ((vec4<u32>(lo | (hi << 16u)) >> (vec4<u32>(j) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) << vec4<u32>(4u);
  return (vec4<f32>(q | h) - 16.0) * half_at(3u * b);
}

fn q4_k_w4(b: u32, j: u32) -> vec4<f32> {
  // Nibble group g = j / 64 holds sub-block 2g low and 2g + 1 high, element l at byte 32g + l.
  let s = j / 32u;
  let v = w[32u * b + 8u * (j / 64u) + (j % 32u) / 4u];
  let q = (vec4<u32>(v) >> (BYTES + 4u * (s & 1u))) & vec4<u32>(15u);
  let t = s & 3u;
  let lo = byte_at(extra[4u * b + 1u], t);
  let mid = byte_at(extra[4u * b + 2u], t);
  let hi = byte_at(extra[4u * b + 3u], t);
  var sc = lo & 63u;
  var mn = mid & 63u;
  if (s >= 4u) {
    sc = (hi & 15u) | ((lo >> 6u) << 4u);
    mn = (hi >> 4u) | ((mid >> 6u) << 4u);
  }
  let dm = unpack2x16float(extra[4u * b]);
  return fma(vec4<f32>(dm.x * f32(sc)), vec4<f32>(q), -vec4<f32>(dm.y * f32(mn)));
}

fn q6_k_w4(b: u32, j: u32) -> vec4<f32> {
  // Half h, quarter c of it, l: low bits in ql[64h + l + 32 (c & 1)] (nibble c >> 1), top bits in
  // qh[32h + l] (bits 2c, 2c + 1), scale 8h + l / 16 + 2c.
  let h = j / 128u;
  let c = (j % 128u) / 32u;
  let l = j % 32u;
  let base = 52u * b;
  let ql = (vec4<u32>(w[base + (64u * h + l + 32u * (c & 1u)) / 4u]) >> (BYTES + 4u * (c >> 1u))) & vec4<u32>(15u);
  let qh = (vec4<u32>(w[base + 32u + (32u * h + l) / 4u]) >> (BYTES + 2u * c)) & vec4<u32>(3u);
  let s = 8u * h + l / 16u + 2u * c;
  let scale = bitcast<i32>(w[base + 48u + s / 4u] << (24u - 8u * (s % 4u))) >> 24u;
  return vec4<f32>(half_at(b) * f32(scale)) * (vec4<f32>(ql | (qh << vec4<u32>(4u))) - 32.0);
}

fn load_w4(n: u32, k: u32) -> vec4<f32> {
  if (n >= params.N || k >= params.K) {
    return vec4<f32>();
  }
  switch FORMAT {
    case Q8_0: { return q8_0_w4(n * (params.K / 32u) + k / 32u, k % 32u); }
    case Q4_0: { return q4_0_w4(n * (params.K / 32u) + k / 32u, k % 32u); }
    case Q5_0: { return q5_0_w4(n * (params.K / 32u) + k / 32u, k % 32u); }
    case Q4_K: { return q4_k_w4(n * (params.K / 256u) + k / 256u, k % 256u); }
    default: { return q6_k_w4(n * (params.K / 256u) + k / 256u, k % 256u); }
  }
}
