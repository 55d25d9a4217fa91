// ggml_matvec.wgsl's prologue without a fused norm: x as stored.

fn xv(i: u32) -> vec4<f32> {
  return x[i];
}

fn norm_setup(m: u32, tid: u32) {}
