// The activations of activation.wgsl, shared with the matvec epilogues that fuse them, so a fused
// gate/up projection computes exactly what the separate activation pass would.

// exp only ever sees a non-positive argument, so nothing overflows for large |v|.
fn sigmoid(v: f32) -> f32 {
  let e = exp(-abs(v));
  let s = 1.0 / (1.0 + e);
  return select(e * s, s, v >= 0.0);
}

fn silu(v: f32) -> f32 {
  return v * sigmoid(v);
}

// 0.5 v (1 + tanh(u)) == v * sigmoid(2u), u = sqrt(2/pi) (v + 0.044715 v^3): no tanh to overflow,
// no 1 + tanh cancellation. Past |v| = 10, sigmoid(2u) is 1 or below 1e-37, so clamping v inside
// u changes nothing and keeps v^3 finite.
fn gelu(v: f32) -> f32 {
  let c = clamp(v, -10.0, 10.0);
  let u = 0.7978845608 * (c + 0.044715 * c * c * c);
  return v * sigmoid(2.0 * u);
}
