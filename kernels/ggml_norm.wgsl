// ggml_matvec.wgsl's prologue with RMSNorm fused ahead: x is read as x * scale * gamma. With a
// reduction (TPR > 1, GPUs) the workgroup sums x[m]^2 as rmsnorm.wgsl does (its strides and tree
// when WG is its 256); with whole rows per thread (CPU adapters) each thread sums alone.

@group(1) @binding(2) var<storage, read> gamma: array<vec4<f32>>;

var<private> x_scale: f32;
var<private> x_base: u32;

fn xv(i: u32) -> vec4<f32> {
  return x[i] * x_scale * gamma[i - x_base];
}

// Called by every invocation of the workgroup (it holds barriers when TPR > 1).
fn norm_setup(m: u32, tid: u32) {
  x_base = m * (params.K / 4u);
  if (TPR == 1u) {
    var a = vec4<f32>();
    for (var u = 0u; u < params.K / 4u; u++) {
      let v = x[x_base + u];
      a = fma(v, v, a);
    }
    x_scale = inverseSqrt(dot(a, vec4<f32>(1.0)) / f32(params.K) + params.eps);
    return;
  }
  var sum = 0.0;
  for (var c = tid; c < params.K; c += WG) {
    let v = x[x_base + c / 4u][c % 4u];
    sum += v * v;
  }
  partial[tid] = vec4<f32>(sum, 0.0, 0.0, 0.0);
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (tid < stride) {
      partial[tid].x += partial[tid + stride].x;
    }
    workgroupBarrier();
  }
  x_scale = inverseSqrt(partial[0].x / f32(params.K) + params.eps);
  // partial is the dot products' scratch next.
  workgroupBarrier();
}
