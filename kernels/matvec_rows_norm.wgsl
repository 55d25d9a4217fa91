// matvec_rows.wgsl's prologue with RMSNorm fused ahead (CPU adapters): each invocation sums x[m]^2
// itself (no barriers; x is short beside the rows it reads) and reads x as x * scale * gamma.

@group(1) @binding(2) var<storage, read> gamma: array<vec4<f32>>;

var<private> x_scale: f32;

fn load_x(xb: u32, u: u32) -> vec4<f32> {
  return x[xb + u] * x_scale * gamma[u];
}

fn norm_setup(m: u32, tid: u32) {
  let g = params.K / 4u;
  let xb = m * g;
  var a = vec4<f32>();
  for (var u = 0u; u < g; u++) {
    let v = x[xb + u];
    a = fma(v, v, a);
  }
  x_scale = inverseSqrt(dot(a, vec4<f32>(1.0)) / f32(params.K) + params.eps);
}
