// matvec snippet, q8 weights: group g is one word of four int8 (rows are whole words when
// K % 4 == 0); the per-row scale is applied once to the reduced sum.

@group(1) @binding(0) var<storage, read> w: array<u32>;
@group(1) @binding(1) var<storage, read> scales: array<u32>;

fn scale_at(i: u32) -> f32 {
  if (params.scaleF16 != 0u) {
    return unpack2x16float(scales[i >> 1u])[i & 1u];
  }
  return bitcast<f32>(scales[i]);
}

fn weights4(g: u32) -> vec4<f32> {
  // Four sign-extended bytes, lowest first.
  return vec4<f32>((vec4<i32>(bitcast<i32>(w[g])) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

fn finish(n: u32, sum: f32) -> f32 {
  return sum * scale_at(n);
}
