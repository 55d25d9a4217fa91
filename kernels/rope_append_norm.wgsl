// rope-append.wgsl with an RMSNorm over each head of q and k (Qwen3, Gemma 3) before rope: the
// thread sums its head row's squares itself (a head is short) and reads x * scale * weight, the
// norm's own products in its order.

@group(0) @binding(7) var<storage, read> q_norm: array<f32>;
@group(0) @binding(8) var<storage, read> k_norm: array<f32>;

var<private> head_scale: f32;
var<private> head_is_q: bool;

fn head_setup(base: u32, is_q: bool) {
  let d = 2u * params.half;
  var sum = 0.0;
  for (var c = 0u; c < d; c++) {
    let v = qkv[base + c];
    sum += v * v;
  }
  head_scale = inverseSqrt(sum / f32(d) + params.eps);
  head_is_q = is_q;
}

fn head_value(base: u32, c: u32) -> f32 {
  return qkv[base + c] * head_scale * select(k_norm[c], q_norm[c], head_is_q);
}
