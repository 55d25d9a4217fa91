// Matrix-vector body for CPU adapters (SwiftShader), y[m, col0 + n] = sum_k x[m, k] * w[n, k].
// SwiftShader runs a workgroup's invocations as SIMD lanes of a CPU thread, where barriers and
// shared-memory reductions cost far more than the arithmetic. Here each invocation computes four
// whole output rows alone (rows_dot, from matvec_rows_vec4.wgsl or matvec_rows_q4.wgsl after the
// dtype's snippet): each load of x feeds four rows, no workgroup memory, no barriers. x rows are
// gid.z.

// Params: linear-params.wgsl, prepended.

override WG: u32 = 16;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  // Workgroups fold into 2-D past the per-dimension cap (vocabulary-sized N).
  let n0 = (gid.x + gid.y * groups.x * WG) * 4u;
  if (n0 >= params.N) {
    return;
  }
  let m = gid.z;
  // Rows past N repeat the last row, so every load stays in the weight; their sums are dropped.
  let rows = min(vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.N - 1u));
  let sums = rows_dot(m * (params.K / 4u), rows);
  let o = m * params.ldo + params.col0 + n0;
  for (var j = 0u; j < 4u && n0 + j < params.N; j++) {
    out[o + j] = finish(n0 + j, sums[j]);
  }
}
