// Mixture-of-experts routing, the reference for kernels/moe.ts and the CPU backend.

/**
 * Routing weights [T, E] from router logits [T, E]: softmax over the experts (in f64, rounded to
 * f32 as transformers' float softmax), the k largest kept (lower index first on a tie), the rest
 * 0, and the kept ones divided by their sum when `normalize` (norm_topk_prob).
 */
export function routeRef(logits: Float32Array, experts: number, k: number, normalize: boolean): Float32Array {
  const out = new Float32Array(logits.length);
  const rows = logits.length / experts;
  for (let t = 0; t < rows; t++) {
    const row = logits.subarray(t * experts, (t + 1) * experts);
    const max = Math.max(...row);
    const exps = Array.from(row, (v) => Math.exp(v - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    const probs = exps.map((v) => Math.fround(v / sum));
    const order = probs.map((p, e) => [p, e] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k);
    const kept = order.reduce((a, [p]) => a + p, 0);
    for (const [p, e] of order) out[t * experts + e] = normalize ? Math.fround(p / kept) : p;
  }
  return out;
}

/** acc + weights[:, e] * y, row by row: acc, y [T, H]; weights [T, E]. */
export function addWeightedRef(acc: Float32Array, y: Float32Array, weights: Float32Array, experts: number, e: number): Float32Array {
  const H = acc.length / (weights.length / experts);
  return acc.map((a, i) => a + weights[Math.floor(i / H) * experts + e]! * y[i]!);
}
