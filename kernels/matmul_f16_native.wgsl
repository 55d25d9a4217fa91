enable f16;
// matmul snippet, native f16 (shader-f16): weights read as f16, and both tiles are staged as f16
// (half the workgroup memory and its traffic), so activations are rounded to f16. The products
// of f16 operands are exact in f32 and are summed in f32.

alias T = f16;

@group(0) @binding(3) var<storage, read> w: array<f16>;

fn load_w4(n: u32, k: u32) -> vec4<f32> {
  var v = vec4<f32>();
  if (n >= params.N) {
    return v;
  }
  let i = n * params.K + k;
  if (k + 4u <= params.K) {
    return vec4<f32>(vec4<f16>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]));
  }
  for (var j = 0u; k + j < params.K; j++) {
    v[j] = f32(w[i + j]);
  }
  return v;
}
