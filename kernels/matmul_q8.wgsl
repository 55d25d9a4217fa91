// matmul snippet, q8 weights: four consecutive k (k % 4 == 0) are one word of the row, whose
// padding bytes are zero; dequantized with the row's scale while staging.

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
  let v = w[n * ((params.K + 3u) / 4u) + k / 4u];
  let q = vec4<f32>((vec4<i32>(bitcast<i32>(v)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
  return q * scale_at(n);
}
