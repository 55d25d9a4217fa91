// matvec snippet, q4 weights: group g is half of word g / 2 (see quant.ts for the nibble order),
// dequantized with the scale of its block of 32 (eight groups).

@group(1) @binding(0) var<storage, read> w: array<u32>;
@group(1) @binding(1) var<storage, read> scales: array<u32>;

fn scale_at(i: u32) -> f32 {
  if (params.scaleF16 != 0u) {
    return unpack2x16float(scales[i >> 1u])[i & 1u];
  }
  return bitcast<f32>(scales[i]);
}

fn weights4(g: u32) -> vec4<f32> {
  let v = w[g >> 1u] >> (16u * (g & 1u));
  let q = vec4<f32>((vec4<u32>(v) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)) - 8.0;
  return q * scale_at(g >> 3u);
}

fn finish(n: u32, sum: f32) -> f32 {
  return sum;
}
