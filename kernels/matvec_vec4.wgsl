// matvec row loop for K % 4 == 0. Lane l takes the groups of four elements l, l + TPR, ..., so a
// load of x across a warp is one contiguous run; weights4 (from the dtype snippet) decodes the
// same group of the weight row. Four groups per iteration keep four weight loads in flight.
// x is read through load_x (matvec_x.wgsl, or matvec_norm.wgsl with a fused RMSNorm).

@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

fn row_dot(m: u32, n: u32, lane: u32) -> f32 {
  let groups = params.K / 4u;
  let xb = m * groups;
  let wb = n * groups;
  var a0 = vec4<f32>();
  var a1 = vec4<f32>();
  var a2 = vec4<f32>();
  var a3 = vec4<f32>();
  var u = lane;
  for (; u + 3u * TPR < groups; u += 4u * TPR) {
    a0 = fma(load_x(xb, u), weights4(wb + u), a0);
    a1 = fma(load_x(xb, u + TPR), weights4(wb + u + TPR), a1);
    a2 = fma(load_x(xb, u + 2u * TPR), weights4(wb + u + 2u * TPR), a2);
    a3 = fma(load_x(xb, u + 3u * TPR), weights4(wb + u + 3u * TPR), a3);
  }
  for (; u < groups; u += TPR) {
    a0 = fma(load_x(xb, u), weights4(wb + u), a0);
  }
  let a = (a0 + a1) + (a2 + a3);
  return a.x + a.y + a.z + a.w;
}
