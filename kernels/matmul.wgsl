// Tiled matrix product body, out[m, col0 + n] = sum_k x[m, k] * w[n, k], for prefill (many rows
// of x). A workgroup of WG_M x WG_N threads computes a (4 WG_M) x (4 WG_N) tile of out; each
// thread owns a 4 x 4 block held in four vec4 accumulators. Per K step of BK, x and w tiles are
// staged K-major in workgroup memory, so a thread reads its four rows and four columns as one
// vec4 each. The dtype snippet prepended to this file supplies w, load_w4 and the tile type T.

// Params: linear-params.wgsl, prepended.

override WG_M: u32 = 16;
override WG_N: u32 = 16;
// A multiple of 4: w is staged four K values at a time.
override BK: u32 = 16;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;

// xs[kk * WG_M + i] = rows 4i..4i+3 of the tile at k0 + kk; ws likewise for columns.
var<workgroup> xs: array<vec4<T>, BK * WG_M>;
var<workgroup> ws: array<vec4<T>, BK * WG_N>;

fn store_tiles(tid: u32, m0: u32, n0: u32, k0: u32) {
  let threads = WG_M * WG_N;
  // Consecutive threads read consecutive k of one row of x.
  for (var e = tid; e < BK * WG_M * 4u; e += threads) {
    let kk = e % BK;
    let mm = e / BK;
    let m = m0 + mm;
    let k = k0 + kk;
    var v = 0.0;
    if (m < params.M && k < params.K) {
      v = x[m * params.K + k];
    }
    xs[kk * WG_M + mm / 4u][mm % 4u] = T(v);
  }
  let quads = BK / 4u;
  for (var u = tid; u < quads * WG_N * 4u; u += threads) {
    let kq = u % quads;
    let nn = u / quads;
    let v = load_w4(n0 + nn, k0 + 4u * kq);
    let at = 4u * kq * WG_N + nn / 4u;
    let c = nn % 4u;
    ws[at][c] = T(v.x);
    ws[at + WG_N][c] = T(v.y);
    ws[at + 2u * WG_N][c] = T(v.z);
    ws[at + 3u * WG_N][c] = T(v.w);
  }
}

@compute @workgroup_size(WG_M * WG_N)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let tx = tid % WG_N;
  let ty = tid / WG_N;
  let m0 = wid.y * WG_M * 4u;
  let n0 = wid.x * WG_N * 4u;
  var acc0 = vec4<f32>();
  var acc1 = vec4<f32>();
  var acc2 = vec4<f32>();
  var acc3 = vec4<f32>();
  for (var k0 = 0u; k0 < params.K; k0 += BK) {
    store_tiles(tid, m0, n0, k0);
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let a = vec4<f32>(xs[kk * WG_M + ty]);
      let b = vec4<f32>(ws[kk * WG_N + tx]);
      acc0 = fma(vec4<f32>(a.x), b, acc0);
      acc1 = fma(vec4<f32>(a.y), b, acc1);
      acc2 = fma(vec4<f32>(a.z), b, acc2);
      acc3 = fma(vec4<f32>(a.w), b, acc3);
    }
    workgroupBarrier();
  }
  let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  let n = n0 + 4u * tx;
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + 4u * ty + i;
    if (m >= params.M) {
      break;
    }
    let o = m * params.ldo + params.col0 + n;
    for (var j = 0u; j < 4u && n + j < params.N; j++) {
      out[o + j] = acc[i][j];
    }
  }
}
