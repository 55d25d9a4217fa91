/** Lowest index of each row's largest value; NaN is skipped and a row of only NaN gives 0. */
export function argmaxRef(x: Float32Array, cols: number): Uint32Array {
  const out = new Uint32Array(x.length / cols);
  for (let r = 0; r < out.length; r++) {
    let best = -1;
    for (let c = 0; c < cols; c++) {
      const v = x[r * cols + c]!;
      if (!Number.isNaN(v) && (best < 0 || v > x[r * cols + best]!)) best = c;
    }
    out[r] = Math.max(best, 0);
  }
  return out;
}
