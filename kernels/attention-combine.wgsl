// Merges the per-split partials of attention.wgsl ([T * heads, splits, 2 + HD]: max, sum,
// unnormalized row) into normalized output rows: one workgroup per (head, query token).

struct Params {
  heads: u32,
  splits: u32,
}

override WG: u32 = 64;
override HD: u32 = 64;

@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * params.heads + wid.x;
  let stride = HD + 2u;
  let base = row * params.splits * stride;
  var m = -3.0e38;
  for (var s = 0u; s < params.splits; s++) {
    m = max(m, partials[base + s * stride]);
  }
  var sum = 0.0;
  for (var s = 0u; s < params.splits; s++) {
    let p = base + s * stride;
    sum += exp(partials[p] - m) * partials[p + 1u];
  }
  for (var d = lid; d < HD; d += WG) {
    var o = 0.0;
    for (var s = 0u; s < params.splits; s++) {
      let p = base + s * stride;
      o += exp(partials[p] - m) * partials[p + 2u + d];
    }
    out[row * HD + d] = o / sum;
  }
}
