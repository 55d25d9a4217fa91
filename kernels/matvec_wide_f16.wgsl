// matvec_wide.wgsl snippet, f16 weights packed two per word (quant.ts): a unit is eight halves in
// element order, unpacked to f32. The values are exactly those of native f16 widened to f32, so
// adapters with shader-f16 take this snippet too.

@group(1) @binding(0) var<storage, read> w: array<vec4<u32>>;

fn unit_dot(xb: u32, g: u32, i: u32, acc: vec4<f32>) -> vec4<f32> {
  let h = w[i];
  let a = fma(load_x(xb, g), vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y)), acc);
  return fma(load_x(xb, g + 1u), vec4<f32>(unpack2x16float(h.z), unpack2x16float(h.w)), a);
}

fn finish(n: u32, sum: f32) -> f32 {
  return sum;
}
