// matmul snippet, f32 weights: four consecutive k of one row, zero outside [N, K].

alias T = f32;

@group(0) @binding(3) var<storage, read> w: array<f32>;

fn load_w4(n: u32, k: u32) -> vec4<f32> {
  var v = vec4<f32>();
  if (n >= params.N) {
    return v;
  }
  let i = n * params.K + k;
  if (k + 4u <= params.K) {
    return vec4<f32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]);
  }
  for (var j = 0u; k + j < params.K; j++) {
    v[j] = w[i + j];
  }
  return v;
}
