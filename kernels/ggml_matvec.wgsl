// Matrix-vector product on GGML-quantized weights, out[m, col0 + n] = sum_k x[m, k] * w[n, k], for
// decode. The weight is read once, in its blocks (two planes, see tensor.ts GGML_PLANES): a row is a
// run of units, each one 16-byte vector of quants (Q6_K: three), and lane l of a group of TPR
// threads takes units l, l + TPR, ..., so neighbouring lanes load neighbouring vectors. Scales are
// applied to each unit's partial dot, never per element. A group computes ROWS rows at once (more
// independent loads in flight, the same x for each), reduced over its lanes in workgroup memory;
// TPR = 1 (CPU adapters, where barriers are dear) gives whole rows per thread and no reduction.
// x rows are workgroup_id.z.
// Fusions as in matvec.wgsl: x is read through xv (ggml_x.wgsl, or ggml_norm.wgsl with RMSNorm
// fused ahead), out is written by store (matvec_out*.wgsl), and with GATED a group's rows are gate
// rows j.. and up rows I + j.. of a [gate; up] weight, combined by store_gated.

// Params: linear-params.wgsl, prepended.

override WG: u32 = 256;
// Threads per group of rows: a power of two dividing WG.
override TPR: u32 = 32;
// Rows per group, 1 to 4.
override ROWS: u32 = 2;
// One of the format constants below.
override FORMAT: u32 = 0;
// A [gate; up] weight: ROWS (2 or 4) rows per group make ROWS / 2 outputs.
override GATED: bool = false;

const Q8_0 = 0u;
const Q4_0 = 1u;
const Q4_K = 2u;
const Q6_K = 3u;
const Q5_0 = 4u;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(1) @binding(0) var<storage, read> w: array<vec4<u32>>;
// The meta plane (`meta` is reserved in WGSL): f16 pairs of d (Q8_0, Q4_0, Q6_K), four words per block (Q4_K),
// three halves d, qh low, qh high per block (Q5_0).
@group(1) @binding(1) var<storage, read> extra: array<u32>;

var<workgroup> partial: array<vec4<f32>, WG>;

const BYTES = vec4<u32>(0u, 8u, 16u, 24u);

fn half_at(i: u32) -> f32 {
  return unpack2x16float(extra[i >> 1u])[i & 1u];
}

// Elements of x per unit.
fn unit_elements() -> u32 {
  switch FORMAT {
    case Q8_0: { return 16u; }
    case Q6_K: { return 64u; }
    default: { return 32u; }
  }
}

fn i8x4(v: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) << (24u - BYTES)) >> vec4<u32>(24u));
}

// Nibbles of the four bytes of v: low ones for shift 0, high ones for shift 4.
fn nib4(v: u32, shift: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(v) >> (BYTES + shift)) & vec4<u32>(15u));
}

// Q8_0: half a block, 16 int8.
fn unit_q8_0(xb: u32, wi: u32, u: u32) -> f32 {
  let q = w[wi];
  let i = xb + 4u * u;
  let s = dot(xv(i), i8x4(q.x)) + dot(xv(i + 1u), i8x4(q.y)) + dot(xv(i + 2u), i8x4(q.z)) + dot(xv(i + 3u), i8x4(q.w));
  return s * half_at(wi >> 1u);
}

// Q4_0: a block; byte j holds element j (low nibble) and j + 16 (high).
fn unit_q4_0(xb: u32, wi: u32, u: u32) -> f32 {
  let q = w[wi];
  let i = xb + 8u * u;
  var s = dot(xv(i), nib4(q.x, 0u) - 8.0) + dot(xv(i + 1u), nib4(q.y, 0u) - 8.0);
  s += dot(xv(i + 2u), nib4(q.z, 0u) - 8.0) + dot(xv(i + 3u), nib4(q.w, 0u) - 8.0);
  s += dot(xv(i + 4u), nib4(q.x, 4u) - 8.0) + dot(xv(i + 5u), nib4(q.y, 4u) - 8.0);
  s += dot(xv(i + 6u), nib4(q.z, 4u) - 8.0) + dot(xv(i + 7u), nib4(q.w, 4u) - 8.0);
  return s * half_at(wi);
}

fn u16_at(i: u32) -> u32 {
  return (extra[i >> 1u] >> (16u * (i & 1u))) & 0xffffu;
}

// The fifth bits of elements e .. e + 3 from qh, in place (16 or 0).
fn hi4(qh: u32, e: u32) -> vec4<f32> {
  return vec4<f32>(((vec4<u32>(qh) >> (vec4<u32>(e) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) << vec4<u32>(4u));
}

// Q5_0: a block; nibbles as Q4_0, bit e of qh the fifth bit of element e; w = (q - 16) * d.
fn unit_q5_0(xb: u32, wi: u32, u: u32) -> f32 {
  let q = w[wi];
  let qh = u16_at(3u * wi + 1u) | (u16_at(3u * wi + 2u) << 16u);
  let i = xb + 8u * u;
  var s = dot(xv(i), nib4(q.x, 0u) + hi4(qh, 0u) - 16.0) + dot(xv(i + 1u), nib4(q.y, 0u) + hi4(qh, 4u) - 16.0);
  s += dot(xv(i + 2u), nib4(q.z, 0u) + hi4(qh, 8u) - 16.0) + dot(xv(i + 3u), nib4(q.w, 0u) + hi4(qh, 12u) - 16.0);
  s += dot(xv(i + 4u), nib4(q.x, 4u) + hi4(qh, 16u) - 16.0) + dot(xv(i + 5u), nib4(q.y, 4u) + hi4(qh, 20u) - 16.0);
  s += dot(xv(i + 6u), nib4(q.z, 4u) + hi4(qh, 24u) - 16.0) + dot(xv(i + 7u), nib4(q.w, 4u) + hi4(qh, 28u) - 16.0);
  return s * half_at(3u * wi);
}

// Q4_K scales and mins of sub-blocks 2g and 2g + 1 from the 12 packed bytes (extra words 1..3).
fn q4_k_scales(b: u32, g: u32) -> vec4<f32> {
  let shift = vec2<u32>(16u * (g & 1u), 16u * (g & 1u) + 8u);
  let lo = (vec2<u32>(extra[4u * b + 1u]) >> shift) & vec2<u32>(255u);
  let mid = (vec2<u32>(extra[4u * b + 2u]) >> shift) & vec2<u32>(255u);
  let hi = (vec2<u32>(extra[4u * b + 3u]) >> shift) & vec2<u32>(255u);
  // Sub-blocks 0..3 keep 6 bits in bytes s and s + 4; 4..7 their low 4 bits in byte s + 4 and the
  // top 2 in bits 6..7 of bytes s - 4 (scale) and s (min).
  let upper = g >= 2u;
  let sc = select(lo & vec2<u32>(63u), (hi & vec2<u32>(15u)) | ((lo >> vec2<u32>(6u)) << vec2<u32>(4u)), upper);
  let mn = select(mid & vec2<u32>(63u), (hi >> vec2<u32>(4u)) | ((mid >> vec2<u32>(6u)) << vec2<u32>(4u)), upper);
  return vec4<f32>(vec2<f32>(sc), vec2<f32>(mn));
}

// Q4_K: 16 bytes of nibble group g (an eighth of the block), 16 elements of sub-block 2g in the
// low nibbles and the same 16 of sub-block 2g + 1 in the high ones; w = d * sc * q - dmin * m.
fn unit_q4_k(xb: u32, wi: u32, u: u32) -> f32 {
  let q = w[wi];
  let b = wi >> 3u;
  let v = u & 7u;
  let g = v >> 1u;
  let i = xb + 64u * (u >> 3u) + 16u * g + 4u * (v & 1u);
  let x0 = xv(i);
  let x1 = xv(i + 1u);
  let x2 = xv(i + 2u);
  let x3 = xv(i + 3u);
  let x4 = xv(i + 8u);
  let x5 = xv(i + 9u);
  let x6 = xv(i + 10u);
  let x7 = xv(i + 11u);
  let qlo = dot(x0, nib4(q.x, 0u)) + dot(x1, nib4(q.y, 0u)) + dot(x2, nib4(q.z, 0u)) + dot(x3, nib4(q.w, 0u));
  let qhi = dot(x4, nib4(q.x, 4u)) + dot(x5, nib4(q.y, 4u)) + dot(x6, nib4(q.z, 4u)) + dot(x7, nib4(q.w, 4u));
  let one = vec4<f32>(1.0);
  let xs = vec2<f32>(dot((x0 + x1) + (x2 + x3), one), dot((x4 + x5) + (x6 + x7), one));
  let dm = unpack2x16float(extra[4u * b]);
  let sm = q4_k_scales(b, g);
  return dm.x * (sm.x * qlo + sm.y * qhi) - dm.y * dot(sm.zw, xs);
}

// Q6_K: 64 elements, l = 16 lq .. 16 lq + 15 of half h, at l, l + 32, l + 64 and l + 96: a vector
// of ql[l], one of ql[l + 32] and one of qh[l], four int8 scales; w = d * scale * (q - 32).
fn unit_q6_k(xb: u32, wi: u32, u: u32) -> f32 {
  let b = wi >> 2u;
  let v = u & 3u;
  let h = v >> 1u;
  let lq = v & 1u;
  let base = 13u * b;
  let qa = w[base + 4u * h + lq];
  let qb = w[base + 4u * h + 2u + lq];
  let qh = w[base + 8u + v];
  // Scales 8h + lq + 2c for quarters c = 0..3: bytes 8 lq and 8 lq + 16 of words 2h and 2h + 1.
  let sw = w[base + 12u];
  let sh = vec4<u32>(8u * lq, 8u * lq + 16u, 8u * lq, 8u * lq + 16u);
  let words = vec4<u32>(sw[2u * h], sw[2u * h], sw[2u * h + 1u], sw[2u * h + 1u]);
  let scales = vec4<f32>(bitcast<vec4<i32>>(words << (vec4<u32>(24u) - sh)) >> vec4<u32>(24u));
  let i = xb + 64u * (u >> 2u) + 32u * h + 4u * lq;
  var s = vec4<f32>();
  for (var k = 0u; k < 4u; k++) {
    let a = vec4<u32>(qa[k]) >> BYTES;
    let c = vec4<u32>(qb[k]) >> BYTES;
    let t = vec4<u32>(qh[k]) >> BYTES;
    let m3 = vec4<u32>(3u);
    let m15 = vec4<u32>(15u);
    let q0 = (a & m15) | ((t & m3) << vec4<u32>(4u));
    let q1 = (c & m15) | (((t >> vec4<u32>(2u)) & m3) << vec4<u32>(4u));
    let q2 = ((a >> vec4<u32>(4u)) & m15) | (((t >> vec4<u32>(4u)) & m3) << vec4<u32>(4u));
    let q3 = ((c >> vec4<u32>(4u)) & m15) | (((t >> vec4<u32>(6u)) & m3) << vec4<u32>(4u));
    s += vec4<f32>(
      dot(xv(i + k), vec4<f32>(q0) - 32.0),
      dot(xv(i + 8u + k), vec4<f32>(q1) - 32.0),
      dot(xv(i + 16u + k), vec4<f32>(q2) - 32.0),
      dot(xv(i + 24u + k), vec4<f32>(q3) - 32.0),
    );
  }
  return half_at(b) * dot(s, scales);
}

// Unit u of weight row `row` against x from vector xb; units are the quant vectors of a row, in order
// (Q6_K: four per block of 13 vectors).
fn unit_dot(xb: u32, row: u32, u: u32, units: u32) -> f32 {
  let wi = row * units + u;
  switch FORMAT {
    case Q8_0: { return unit_q8_0(xb, wi, u); }
    case Q4_0: { return unit_q4_0(xb, wi, u); }
    case Q5_0: { return unit_q5_0(xb, wi, u); }
    case Q4_K: { return unit_q4_k(xb, wi, u); }
    default: { return unit_q6_k(xb, wi, u); }
  }
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
  @builtin(local_invocation_index) tid: u32,
) {
  let lane = tid % TPR;
  // Workgroups fold into 2-D past the per-dimension cap (vocabulary-sized N).
  let group = (wid.x + wid.y * groups.x) * (WG / TPR) + tid / TPR;
  let m = wid.z;
  norm_setup(m, tid);
  let half = params.N / 2u;
  let n0 = group * ROWS;
  let j0 = group * (ROWS / 2u);
  let valid = select(n0 < params.N, j0 < half, GATED);
  var acc = vec4<f32>();
  if (valid) {
    // Rows past N repeat the last row, so every load stays in the weight; their sums are dropped.
    var rows = min(vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.N - 1u));
    if (GATED) {
      let j1 = min(j0 + 1u, half - 1u);
      rows = vec4<u32>(j0, half + j0, j1, half + j1);
    }
    let units = params.K / unit_elements();
    let xb = m * (params.K / 4u);
    for (var u = lane; u < units; u += TPR) {
      acc.x += unit_dot(xb, rows.x, u, units);
      if (ROWS > 1u) {
        acc.y += unit_dot(xb, rows.y, u, units);
      }
      if (ROWS > 2u) {
        acc.z += unit_dot(xb, rows.z, u, units);
      }
      if (ROWS > 3u) {
        acc.w += unit_dot(xb, rows.w, u, units);
      }
    }
  }
  if (TPR > 1u) {
    partial[tid] = acc;
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
      workgroupBarrier();
      if (lane < s) {
        partial[tid] += partial[tid + s];
      }
    }
    acc = partial[tid];
  }
  if (lane == 0u && valid) {
    if (GATED) {
      store_gated(m, j0, acc.x, acc.y);
      if (ROWS > 3u && j0 + 1u < half) {
        store_gated(m, j0 + 1u, acc.z, acc.w);
      }
    } else {
      for (var r = 0u; r < ROWS && n0 + r < params.N; r++) {
        store(m, n0 + r, acc[r]);
      }
    }
  }
}
