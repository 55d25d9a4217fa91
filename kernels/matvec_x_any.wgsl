// matvec prologue of the scalar path (matvec_any.wgsl): no fused norm there.

fn norm_setup(m: u32, tid: u32) {}
