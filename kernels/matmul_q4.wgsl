// matmul snippet, q4 weights: four consecutive k (k % 4 == 0) are four nibbles of one word of a
// block (see quant.ts for the order), dequantized with the block's scale while staging.

alias T = f32;

@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read> scales: array<u32>;

fn scale_at(i: u32) -> f32 {
  if (params.scaleF16 != 0u) {
    return unpack2x16float(scales[i >> 1u])[i & 1u];
  }
  return bitcast<f32>(scales[i]);
}

fn load_w4(n: u32, k: u32) -> vec4<f32> {
  if (n >= params.N || k >= params.K) {
    return vec4<f32>();
  }
  let b = n * (params.K / 32u) + k / 32u;
  let v = w[4u * b + (k % 32u) / 8u] >> (4u * (k % 8u));
  let q = vec4<f32>((vec4<u32>(v) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)) - 8.0;
  return q * scale_at(b);
}
