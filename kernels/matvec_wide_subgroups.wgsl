enable subgroups;
// matvec.wgsl for the wide loop (matvec_wide.wgsl) on adapters with `subgroups`: a row's lane sums
// are added by subgroupAdd, one subgroup sum per subgroup, rather than by a shared-memory tree of
// log2(TPR) barriers. Prepended to the other snippets (its `enable` must come first).
// WGSL does not say which invocations make up a subgroup, so work is not given out by
// local_invocation_index here: each subgroup takes a dense number from a workgroup counter, and its
// lanes the indices number * subgroup_size + subgroup_invocation_id. When every subgroup is full
// (their count times the size is WG) and TPR is a multiple of the size, a row's TPR indices are
// whole subgroups. Otherwise (checked per workgroup) the indices are local_invocation_index and the
// row is reduced by the tree, as in matvec.wgsl. Fusions and GATED as there.

// Params: linear-params.wgsl.

override WG: u32 = 256;
// Threads per output row: a power of two dividing WG (at most WG / 2 with GATED).
override TPR: u32 = 64;
override GATED: bool = false;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

var<workgroup> partial: array<f32, WG>;
var<workgroup> next_subgroup: atomic<u32>;
var<workgroup> subgroup_count: u32;

// Row total from partial[first ..] in steps of `stride` (the subgroup size, or TPR after the tree).
fn row_total(first: u32, stride: u32) -> f32 {
  var t = 0.0;
  for (var i = first; i < first + TPR; i += stride) {
    t += partial[i];
  }
  return t;
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
  @builtin(local_invocation_index) tid: u32,
  @builtin(subgroup_invocation_id) sg_lane: u32,
  @builtin(subgroup_size) sg_size: u32,
) {
  var number = 0u;
  if (subgroupElect()) {
    number = atomicAdd(&next_subgroup, 1u);
  }
  number = subgroupBroadcastFirst(number);
  workgroupBarrier();
  if (tid == 0u) {
    subgroup_count = atomicLoad(&next_subgroup);
  }
  let whole = workgroupUniformLoad(&subgroup_count) * sg_size == WG && TPR % sg_size == 0u;
  let id = select(tid, number * sg_size + sg_lane, whole);
  let lane = id % TPR;
  // Workgroups fold into 2-D past the per-dimension cap (vocabulary-sized N).
  let slot = (wid.x + wid.y * groups.x) * (WG / TPR) + id / TPR;
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
  // Every lane holds its subgroup's sum: a row's total is one entry per subgroup.
  partial[id] = select(sum, subgroupAdd(sum), whole);
  var stride = sg_size;
  if (!whole) {
    stride = TPR;
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
      workgroupBarrier();
      if (lane < s) {
        partial[id] += partial[id + s];
      }
    }
  }
  workgroupBarrier();
  if (lane == 0u && valid) {
    if (GATED) {
      if ((slot & 1u) == 0u) {
        store_gated(m, j, finish(n, row_total(id, stride)), finish(half + j, row_total(id + TPR, stride)));
      }
    } else {
      store(m, n, finish(n, row_total(id, stride)));
    }
  }
}
