// matvec_rows.wgsl's row loop for f32, f16 and q8 (K % 4 == 0): one vec4 of x per step, decoded
// against the same group of four rows by weights4 (from the dtype snippet). x is read through
// load_x (matvec_x.wgsl, or matvec_rows_norm.wgsl with a fused RMSNorm).

fn rows_dot(xb: u32, rows: vec4<u32>) -> vec4<f32> {
  let g = params.K / 4u;
  let w = rows * g;
  var a0 = vec4<f32>();
  var a1 = vec4<f32>();
  var a2 = vec4<f32>();
  var a3 = vec4<f32>();
  for (var u = 0u; u < g; u++) {
    let xv = load_x(xb, u);
    a0 = fma(xv, weights4(w.x + u), a0);
    a1 = fma(xv, weights4(w.y + u), a1);
    a2 = fma(xv, weights4(w.z + u), a2);
    a3 = fma(xv, weights4(w.w + u), a3);
  }
  let ones = vec4<f32>(1.0);
  return vec4<f32>(dot(a0, ones), dot(a1, ones), dot(a2, ones), dot(a3, ones));
}
