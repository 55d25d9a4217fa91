// The CPU backend's attention: kernels/cpu/attention.ts's attentionRef with the same sums in the
// same order (so the same f32 results), without its per-call allocations and with the loop bounds
// hoisted. Decode steps call it once per row and layer, so its overhead counts.
import type { AttentionDims } from '../../../kernels/cpu/attention.ts';

let scores = new Float64Array(256);
const row = new Float64Array(1024);

/** attentionRef(q, k, v, dims), bit for bit. */
export function attentionFast(q: Float32Array, k: Float32Array, v: Float32Array, dims: AttentionDims): Float32Array {
  const { tokens, heads, kvHeads, headDim: hd, startPos } = dims;
  if (hd > row.length) throw new RangeError(`attention: head dimension ${hd} above ${row.length}`);
  const scale = dims.scale ?? 1 / Math.sqrt(hd);
  const group = heads / kvHeads;
  const kvStride = kvHeads * hd;
  const out = new Float32Array(tokens * heads * hd);
  if (scores.length < startPos + tokens) scores = new Float64Array(2 * (startPos + tokens));
  const s = scores;
  for (let t = 0; t < tokens; t++) {
    const n = startPos + t + 1;
    for (let h = 0; h < heads; h++) {
      const qBase = (t * heads + h) * hd;
      const kvBase = Math.floor(h / group) * hd;
      let max = -Infinity;
      for (let j = 0, kBase = kvBase; j < n; j++, kBase += kvStride) {
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += q[qBase + d]! * k[kBase + d]!;
        const score = dot * scale;
        s[j] = score;
        max = Math.max(max, score);
      }
      for (let d = 0; d < hd; d++) row[d] = 0;
      let sum = 0;
      for (let j = 0, vBase = kvBase; j < n; j++, vBase += kvStride) {
        const p = Math.exp(s[j]! - max);
        sum += p;
        for (let d = 0; d < hd; d++) row[d] = row[d]! + p * v[vBase + d]!;
      }
      for (let d = 0; d < hd; d++) out[qBase + d] = row[d]! / sum;
    }
  }
  return out;
}
