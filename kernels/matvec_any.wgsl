// matvec snippet for any K (rows not aligned to a vector load): one element per step, f32
// (DTYPE 0), f16 packed (1) or q8 (2). Real layer widths take the vector snippets.

override DTYPE: u32 = 0u;

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(1) @binding(0) var<storage, read> w: array<u32>;
// q8 scales; the other dtypes bind any buffer here.
@group(1) @binding(1) var<storage, read> scales: array<u32>;

fn scale_at(i: u32) -> f32 {
  if (params.scaleF16 != 0u) {
    return unpack2x16float(scales[i >> 1u])[i & 1u];
  }
  return bitcast<f32>(scales[i]);
}

fn weight(n: u32, k: u32) -> f32 {
  if (DTYPE == 0u) {
    return bitcast<f32>(w[n * params.K + k]);
  }
  if (DTYPE == 1u) {
    let i = n * params.K + k;
    return unpack2x16float(w[i >> 1u])[i & 1u];
  }
  let word = w[n * ((params.K + 3u) / 4u) + (k >> 2u)];
  return f32(extractBits(bitcast<i32>(word), 8u * (k & 3u), 8u));
}

fn row_dot(m: u32, n: u32, lane: u32) -> f32 {
  let xb = m * params.K;
  var a = 0.0;
  for (var k = lane; k < params.K; k += TPR) {
    a = fma(x[xb + k], weight(n, k), a);
  }
  return a;
}

fn finish(n: u32, sum: f32) -> f32 {
  if (DTYPE == 2u) {
    return sum * scale_at(n);
  }
  return sum;
}
