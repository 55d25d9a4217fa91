// matvec_wide.wgsl snippet, q8 weights: a unit is four words of four int8 (sixteen elements, rows
// whole units when K % 16 == 0); the per-row scale is applied once to the reduced sum.

@group(1) @binding(0) var<storage, read> w: array<vec4<u32>>;

// Four sign-extended bytes, lowest first.
fn i8x4(v: u32) -> vec4<f32> {
  return vec4<f32>((vec4<i32>(bitcast<i32>(v)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

fn unit_dot(xb: u32, g: u32, i: u32, acc: vec4<f32>) -> vec4<f32> {
  let q = w[i];
  var a = fma(load_x(xb, g), i8x4(q.x), acc);
  a = fma(load_x(xb, g + 1u), i8x4(q.y), a);
  a = fma(load_x(xb, g + 2u), i8x4(q.z), a);
  return fma(load_x(xb, g + 3u), i8x4(q.w), a);
}

fn finish(n: u32, sum: f32) -> f32 {
  return sum * scale_at(n);
}
