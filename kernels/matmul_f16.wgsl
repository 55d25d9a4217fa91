// matmul snippet, f16 weights packed two per word: four consecutive k of one row as two words
// where the row keeps word alignment (even K), else one half at a time. Math stays f32.

alias T = f32;

@group(0) @binding(3) var<storage, read> w: array<u32>;

fn load_w4(n: u32, k: u32) -> vec4<f32> {
  var v = vec4<f32>();
  if (n >= params.N) {
    return v;
  }
  let i = n * params.K + k;
  if (k + 4u <= params.K && (i & 1u) == 0u) {
    return vec4<f32>(unpack2x16float(w[i >> 1u]), unpack2x16float(w[(i >> 1u) + 1u]));
  }
  for (var j = 0u; j < 4u && k + j < params.K; j++) {
    v[j] = unpack2x16float(w[(i + j) >> 1u])[(i + j) & 1u];
  }
  return v;
}
