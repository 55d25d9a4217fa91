// matvec_wide.wgsl snippet, q4 weights: a unit is one block of 32 (four words), so its scale is
// read once and applied to the unit's partial dot. Word j holds elements 8j .. 8j + 7 from the
// low nibble up (quant.ts): its low half is x group 2j, its high half group 2j + 1.

@group(1) @binding(0) var<storage, read> w: array<vec4<u32>>;

// The four nibbles of the low half of v, lowest first, less the offset 8.
fn nib4(v: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(v) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)) - 8.0;
}

fn unit_dot(xb: u32, g: u32, i: u32, acc: vec4<f32>) -> vec4<f32> {
  let q = w[i];
  var s = load_x(xb, g) * nib4(q.x);
  s = fma(load_x(xb, g + 1u), nib4(q.x >> 16u), s);
  s = fma(load_x(xb, g + 2u), nib4(q.y), s);
  s = fma(load_x(xb, g + 3u), nib4(q.y >> 16u), s);
  s = fma(load_x(xb, g + 4u), nib4(q.z), s);
  s = fma(load_x(xb, g + 5u), nib4(q.z >> 16u), s);
  s = fma(load_x(xb, g + 6u), nib4(q.w), s);
  s = fma(load_x(xb, g + 7u), nib4(q.w >> 16u), s);
  // Unit i of the weight is block i: the blocks of row n start at n * (K / 32).
  return fma(s, vec4<f32>(scale_at(i)), acc);
}

fn finish(n: u32, sum: f32) -> f32 {
  return sum;
}
