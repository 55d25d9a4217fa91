// matvec prologue without a fused norm: x as stored (vector loops; matvec_any.wgsl reads x itself).

fn load_x(xb: u32, u: u32) -> vec4<f32> {
  return x[xb + u];
}

fn norm_setup(m: u32, tid: u32) {}
