// Mixture-of-experts: routing weights from router logits (softmax, top k, renormalized), one
// workgroup thread per row; and acc + w[:, e] * y, element-wise.

struct Params {
  rows: u32,
  experts: u32,   // E, at most MAX_E
  k: u32,
  normalize: u32,
  expert: u32,    // e, for add_weighted
  width: u32,     // H, for add_weighted
}

override WG: u32 = 64;
const MAX_E: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> a: array<f32>;  // logits, or acc
@group(0) @binding(3) var<storage, read> b: array<f32>;  // y
@group(0) @binding(4) var<storage, read> w: array<f32>;  // routing weights

fn flat_index(gid: vec3u, groups: vec3u) -> u32 {
  return gid.x + gid.y * groups.x * WG;
}

@compute @workgroup_size(WG)
fn route_main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let t = flat_index(gid, groups);
  if (t >= params.rows) {
    return;
  }
  let E = params.experts;
  let base = t * E;
  var m = a[base];
  for (var e = 1u; e < E; e++) {
    m = max(m, a[base + e]);
  }
  var sum = 0.0;
  for (var e = 0u; e < E; e++) {
    sum += exp(a[base + e] - m);
  }
  // The k largest probabilities, lower index first on a tie: each expert counts the experts
  // ahead of it.
  var kept = 0.0;
  for (var e = 0u; e < E; e++) {
    let p = exp(a[base + e] - m) / sum;
    var ahead = 0u;
    for (var j = 0u; j < E; j++) {
      let q = exp(a[base + j] - m) / sum;
      if (q > p || (q == p && j < e)) {
        ahead++;
      }
    }
    if (ahead < params.k) {
      out[base + e] = p;
      kept += p;
    } else {
      out[base + e] = 0.0;
    }
  }
  if (params.normalize != 0u) {
    for (var e = 0u; e < E; e++) {
      out[base + e] = out[base + e] / kept;
    }
  }
}

@compute @workgroup_size(WG)
fn add_weighted_main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = flat_index(gid, groups);
  if (i < params.rows * params.width) {
    let t = i / params.width;
    out[i] = a[i] + w[t * params.experts + params.expert] * b[i];
  }
}
