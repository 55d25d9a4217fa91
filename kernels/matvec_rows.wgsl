// Matrix-vector body for CPU adapters (SwiftShader), y[m, col0 + n] = sum_k x[m, k] * w[n, k].
// SwiftShader runs a workgroup's invocations as SIMD lanes of a CPU thread, where barriers and
// shared-memory reductions cost far more than the arithmetic. Here each invocation computes four
// whole output rows alone (rows_dot, from matvec_rows_vec4.wgsl or matvec_rows_q4.wgsl after the
// dtype's snippet): each load of x feeds four rows, no workgroup memory, no barriers. x rows are
// gid.z. Fusions as in matvec.wgsl: norm_setup (matvec_rows_norm.wgsl computes the scale alone),
// store, and with GATED two outputs per invocation from gate rows j, j + 1 and up rows I + j, I + j + 1.

// Params: linear-params.wgsl, prepended.

override WG: u32 = 16;
override GATED: bool = false;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  // Workgroups fold into 2-D past the per-dimension cap (vocabulary-sized N).
  let slot = gid.x + gid.y * groups.x * WG;
  let m = gid.z;
  let half = params.N / 2u;
  let n0 = select(slot * 4u, slot * 2u, GATED);
  if (n0 >= select(params.N, half, GATED)) {
    return;
  }
  // Rows past the end repeat the last one, so every load stays in the weight; their sums are dropped.
  var rows = min(vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.N - 1u));
  if (GATED) {
    let j1 = min(n0 + 1u, half - 1u);
    rows = vec4<u32>(n0, half + n0, j1, half + j1);
  }
  norm_setup(m, 0u);
  let sums = rows_dot(m * (params.K / 4u), rows);
  if (GATED) {
    store_gated(m, n0, finish(rows.x, sums.x), finish(rows.y, sums.y));
    if (n0 + 1u < half) {
      store_gated(m, n0 + 1u, finish(rows.z, sums.z), finish(rows.w, sums.w));
    }
    return;
  }
  for (var j = 0u; j < 4u && n0 + j < params.N; j++) {
    store(m, n0 + j, finish(n0 + j, sums[j]));
  }
}
