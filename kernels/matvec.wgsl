// Matrix-vector body, y[m, col0 + n] = sum_k x[m, k] * w[n, k], for decode (few rows of x).
// Each group of TPR threads computes one output: partial dots (row_dot, from matvec_vec4.wgsl or
// matvec_any.wgsl, prepended with the dtype's snippet), then a shared-memory tree reduction. A
// workgroup covers WG / TPR outputs so short rows still fill it; x rows are workgroup_id.z.
// Fusions come as snippets: norm_setup (a fused RMSNorm's scale, matvec_norm.wgsl; nothing in
// matvec_x.wgsl), store (the epilogue: plain, + bias, + residual) and, with GATED, store_gated:
// the weight is [gate; up] (N = 2I rows) and neighbouring groups compute gate row j and up row
// I + j, which lane 0 of the gate's group combines into out[m, j].

// Params: linear-params.wgsl, prepended.

override WG: u32 = 256;
// Threads per output row: a power of two dividing WG (at most WG / 2 with GATED).
override TPR: u32 = 64;
override GATED: bool = false;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
  @builtin(local_invocation_index) tid: u32,
) {
  let lane = tid % TPR;
  // Workgroups fold into 2-D past the per-dimension cap (vocabulary-sized N).
  let slot = (wid.x + wid.y * groups.x) * (WG / TPR) + tid / TPR;
  let m = wid.z;
  norm_setup(m, tid);
  let row = slot_row(slot);
  let n = row.n;
  let j = row.j;
  let half = row.half;
  let valid = row.valid;
  var sum = 0.0;
  if (valid) {
    sum = row_dot(m, n, lane);
  }
  partial[tid] = sum;
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lane < s) {
      partial[tid] += partial[tid + s];
    }
  }
  if (GATED) {
    workgroupBarrier();
    if (lane == 0u && (slot & 1u) == 0u && valid) {
      store_gated(m, j, finish(n, partial[tid]), finish(half + j, partial[tid + TPR]));
    }
  } else if (lane == 0u && valid) {
    store(m, n, finish(n, partial[tid]));
  }
}
