enable f16;
// matvec snippet, native f16 weights (shader-f16): group g is one vec4<f16>, widened to f32, so
// products and sums stay f32 (exact products of the f16 weights).

@group(1) @binding(0) var<storage, read> w: array<vec4<f16>>;

fn weights4(g: u32) -> vec4<f32> {
  return vec4<f32>(w[g]);
}

fn finish(n: u32, sum: f32) -> f32 {
  return sum;
}
