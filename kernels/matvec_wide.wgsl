// matvec row loop over wide units, for K a multiple of the dtype's UNIT: a unit is one vec4<u32>
// of the weight row (16 bytes, the widest load a lane makes: eight f16, sixteen int8 or one q4
// block of 32), so every lane moves 16 bytes per load and each weight byte is read once. Lane l
// takes units l, l + TPR, ..., so a warp's loads are one contiguous run; four units per iteration
// keep four loads in flight. unit_dot (the dtype's matvec_wide_*.wgsl) decodes unit i of the weight
// and accumulates it against the UNIT / 4 groups of x from group g, read through load_x
// (matvec_x.wgsl, or matvec_norm.wgsl with a fused RMSNorm).

// Elements per unit: set by matvec.ts from the snippet it prepends (no default, so it must be).
override UNIT: u32;

@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

fn row_dot(m: u32, n: u32, lane: u32) -> f32 {
  let units = params.K / UNIT;
  let step = UNIT / 4u;
  let xb = m * (params.K / 4u);
  // Whole units per row (K % UNIT == 0): row n starts at unit n * units.
  let wb = n * units;
  var a0 = vec4<f32>();
  var a1 = vec4<f32>();
  var a2 = vec4<f32>();
  var a3 = vec4<f32>();
  var u = lane;
  for (; u + 3u * TPR < units; u += 4u * TPR) {
    a0 = unit_dot(xb, u * step, wb + u, a0);
    a1 = unit_dot(xb, (u + TPR) * step, wb + u + TPR, a1);
    a2 = unit_dot(xb, (u + 2u * TPR) * step, wb + u + 2u * TPR, a2);
    a3 = unit_dot(xb, (u + 3u * TPR) * step, wb + u + 3u * TPR, a3);
  }
  for (; u < units; u += TPR) {
    a0 = unit_dot(xb, u * step, wb + u, a0);
  }
  let a = (a0 + a1) + (a2 + a3);
  return a.x + a.y + a.z + a.w;
}
