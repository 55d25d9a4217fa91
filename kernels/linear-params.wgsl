// The uniform every linear kernel (matvec.wgsl, matvec_rows.wgsl, matmul.wgsl) reads; weights.ts's
// linearParams writes it. Prepended to each kernel's code.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  // Row stride of out and the first column this weight part writes (parts split N).
  ldo: u32,
  col0: u32,
  // q8 / q4: scales are f16 pairs rather than f32.
  scaleF16: u32,
  // A matvec with RMSNorm fused ahead of it: the norm's epsilon.
  eps: f32,
}
