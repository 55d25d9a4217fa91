// matvec prologue with RMSNorm fused ahead (matvec.wgsl, GPUs): the workgroup sums x[m]^2 exactly
// as rmsnorm.wgsl does (the same strides and tree when WG is its 256), and x is read as
// x * scale * gamma, the norm's own products in its order: the matvec of the norm's output,
// without the norm's pass or its output buffer.

@group(1) @binding(2) var<storage, read> gamma: array<vec4<f32>>;

var<private> x_scale: f32;

fn load_x(xb: u32, u: u32) -> vec4<f32> {
  return x[xb + u] * x_scale * gamma[u];
}

// Called by every invocation of the workgroup (it holds barriers); m is uniform per workgroup.
fn norm_setup(m: u32, tid: u32) {
  let xb = m * (params.K / 4u);
  var sum = 0.0;
  for (var c = tid; c < params.K; c += WG) {
    let v = x[xb + c / 4u][c % 4u];
    sum += v * v;
  }
  partial[tid] = sum;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (tid < stride) {
      partial[tid] += partial[tid + stride];
    }
    workgroupBarrier();
  }
  x_scale = inverseSqrt(partial[0] / f32(params.K) + params.eps);
  // partial is the dot products' scratch next.
  workgroupBarrier();
}
