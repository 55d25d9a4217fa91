// matvec snippet, f16 weights packed two per word: group g is two words, unpacked to f32 (works
// without shader-f16).

@group(1) @binding(0) var<storage, read> w: array<vec2<u32>>;

fn weights4(g: u32) -> vec4<f32> {
  let h = w[g];
  return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
}

fn finish(n: u32, sum: f32) -> f32 {
  return sum;
}
