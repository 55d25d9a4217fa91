// Causal grouped-query attention in f64: the reference for kernels/attention.ts and the CPU backend.

export interface AttentionDims {
  /** Query tokens: the newest T positions, startPos .. startPos + T - 1. */
  tokens: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  startPos: number;
  /** Default 1 / sqrt(headDim). */
  scale?: number;
  /** Sliding window: query at position p sees only keys p - window + 1 .. p (Mistral, Gemma); none when absent. */
  window?: number;
  /** Gemma 2's soft-capping of the scaled scores: cap * tanh(score / cap); none when absent. */
  softcap?: number;
}

/** cap * tanh(value / cap) in f32 steps, as transformers computes it (Gemma 2's scores and logits); value when cap is absent. */
export function softcap(value: number, cap: number | undefined): number {
  return cap ? Math.fround(Math.fround(Math.tanh(Math.fround(value / cap))) * cap) : value;
}

/** The first key a query sees: 0, or the start of its sliding window. */
export function firstKey(n: number, window: number | undefined): number {
  return window !== undefined && n > window ? n - window : 0;
}

/**
 * q: [T, heads, headDim]; k, v: [startPos + T, kvHeads, headDim] (every cached token, in position
 * order, as appended). Head h reads kv head floor(h / (heads / kvHeads)); query t sees keys
 * 0 .. startPos + t (the last `window` of them with a window). Returns [T, heads, headDim].
 */
export function attentionRef(q: Float32Array, k: Float32Array, v: Float32Array, dims: AttentionDims): Float32Array {
  const { tokens, heads, kvHeads, headDim: hd, startPos } = dims;
  const scale = dims.scale ?? 1 / Math.sqrt(hd);
  const group = heads / kvHeads;
  const out = new Float32Array(tokens * heads * hd);
  const scores = new Float64Array(startPos + tokens);
  const row = new Float64Array(hd);
  for (let t = 0; t < tokens; t++) {
    const n = startPos + t + 1;
    const lo = firstKey(n, dims.window);
    for (let h = 0; h < heads; h++) {
      const qBase = (t * heads + h) * hd;
      const kvh = Math.floor(h / group);
      let max = -Infinity;
      for (let j = lo; j < n; j++) {
        const kBase = (j * kvHeads + kvh) * hd;
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += q[qBase + d]! * k[kBase + d]!;
        scores[j] = softcap(dot * scale, dims.softcap);
        max = Math.max(max, scores[j]!);
      }
      row.fill(0);
      let sum = 0;
      for (let j = lo; j < n; j++) {
        const p = Math.exp(scores[j]! - max);
        sum += p;
        const vBase = (j * kvHeads + kvh) * hd;
        for (let d = 0; d < hd; d++) row[d]! += p * v[vBase + d]!;
      }
      for (let d = 0; d < hd; d++) out[qBase + d] = row[d]! / sum;
    }
  }
  return out;
}
