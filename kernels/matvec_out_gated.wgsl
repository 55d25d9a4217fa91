// matvec epilogue of a fused gate/up projection: out[m, col0 + j] = act(gate) * up, with act
// silu (ACT 0, SwiGLU) or gelu's tanh form (ACT 1, GeGLU) from activation_fns.wgsl, prepended.

override ACT: u32 = 0u;

fn store(m: u32, n: u32, v: f32) {}

fn store_gated(m: u32, j: u32, gate: f32, up: f32) {
  let o = m * params.ldo + params.col0 + j;
  if (ACT == 1u) {
    out[o] = gelu(gate) * up;
  } else {
    out[o] = silu(gate) * up;
  }
}
