// rope-append.wgsl without per-head norms: q and k as projected.

fn head_setup(base: u32, is_q: bool) {}

fn head_value(base: u32, c: u32) -> f32 {
  return qkv[base + c];
}
