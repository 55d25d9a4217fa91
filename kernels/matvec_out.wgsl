// matvec epilogue: out[m, col0 + n] as computed. store_gated is there for the GATED branch the
// body compiles but never takes without matvec_out_gated.wgsl.

fn store(m: u32, n: u32, v: f32) {
  out[m * params.ldo + params.col0 + n] = v;
}

fn store_gated(m: u32, j: u32, gate: f32, up: f32) {}
