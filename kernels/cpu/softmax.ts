/** Softmax over rows of `cols` values: the row max is subtracted first, sums in f64. */
export function softmaxRef(x: Float32Array, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let base = 0; base < x.length; base += cols) {
    let max = -Infinity;
    for (let c = 0; c < cols; c++) max = Math.max(max, x[base + c]!);
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.exp(x[base + c]! - max);
    for (let c = 0; c < cols; c++) out[base + c] = Math.exp(x[base + c]! - max) / sum;
  }
  return out;
}
