// matvec_rows.wgsl's row loop for q4: one word (eight nibbles) of each row per step. Decoding
// dominates on a CPU, so the nibbles are masked in place rather than shifted down: nibble j of a
// half-word is worth q * 16^j, x is prescaled by 16^-j once for all four rows (exact: powers of
// two), and the -8 offset becomes -8 * sum(x) per word, also shared. x is read through load_x.

fn nibbles(half: u32) -> vec4<f32> {
  return vec4<f32>(vec4<u32>(half) & vec4<u32>(0xFu, 0xF0u, 0xF00u, 0xF000u));
}

fn word_dot(lo: vec4<f32>, hi: vec4<f32>, offset: vec4<f32>, i: u32) -> vec4<f32> {
  let v = w[i];
  // A row's words start a block (K % 32 == 0): word i has the scale of block i / 4.
  return fma(lo, nibbles(v), fma(hi, nibbles(v >> 16u), offset)) * scale_at(i >> 2u);
}

fn rows_dot(xb: u32, rows: vec4<u32>) -> vec4<f32> {
  let words = params.K / 8u;
  let w = rows * words;
  let pre = vec4<f32>(1.0, 1.0 / 16.0, 1.0 / 256.0, 1.0 / 4096.0);
  var a0 = vec4<f32>();
  var a1 = vec4<f32>();
  var a2 = vec4<f32>();
  var a3 = vec4<f32>();
  for (var h = 0u; h < words; h++) {
    let xl = load_x(xb, 2u * h);
    let xh = load_x(xb, 2u * h + 1u);
    let offset = -8.0 * (xl + xh);
    let lo = xl * pre;
    let hi = xh * pre;
    a0 += word_dot(lo, hi, offset, w.x + h);
    a1 += word_dot(lo, hi, offset, w.y + h);
    a2 += word_dot(lo, hi, offset, w.z + h);
    a3 += word_dot(lo, hi, offset, w.w + h);
  }
  let ones = vec4<f32>(1.0);
  return vec4<f32>(dot(a0, ones), dot(a1, ones), dot(a2, ones), dot(a3, ones));
}
