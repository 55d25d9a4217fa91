// The CPU backend's attention: kernels/cpu/attention.ts's attentionRef with the same sums in the
// same order (so the same f32 results), without its per-call allocations. Decode steps call it once
// per row and layer, so its speed counts: each f64 sum is a chain of dependent adds, so four keys'
// dot products (and two keys' contributions to the output row) are computed side by side, each
// still summed in attentionRef's order.
// An f16 cache (Uint16Array halves) is widened into f32 scratch first, once per call rather than once
// per query head reading it, so the loops below see only Float32Arrays and stay as fast.
import { f16ToF32 } from '../../../protocol/index.ts';
import { firstKey, softcap, type AttentionDims } from '../../../kernels/cpu/attention.ts';

let scores = new Float64Array(256);
const row = new Float64Array(1024);
const qRow = new Float64Array(1024);
let kWide = new Float32Array(0);
let vWide = new Float32Array(0);
/** The f32 value of every f16 bit pattern (256 KiB), made at the first f16 call. */
let halfValues: Float32Array | undefined;

/**
 * attentionRef(q, k, v, dims), bit for bit; k, v as Uint16Array hold f16 bit patterns, read as
 * their values (so the result is attentionRef on the f16-rounded keys and values).
 */
export function attentionFast(q: Float32Array, k: Float32Array | Uint16Array, v: Float32Array | Uint16Array, dims: AttentionDims): Float32Array {
  if (k instanceof Float32Array && v instanceof Float32Array) return attendF32(q, k, v, dims);
  const length = (dims.startPos + dims.tokens) * dims.kvHeads * dims.headDim;
  if (kWide.length < length) {
    kWide = new Float32Array(2 * length);
    vWide = new Float32Array(2 * length);
  }
  // Keys before the first query's window are never read.
  const from = firstKey(dims.startPos + 1, dims.window) * dims.kvHeads * dims.headDim;
  widen(k, kWide, from, length);
  widen(v, vWide, from, length);
  return attendF32(q, kWide, vWide, dims);
}

function widen(src: Float32Array | Uint16Array, dst: Float32Array, from: number, to: number): void {
  if (src instanceof Float32Array) {
    dst.set(src.subarray(from, to), from);
    return;
  }
  const table = (halfValues ??= Float32Array.from({ length: 0x10000 }, (_, h) => f16ToF32(h)));
  for (let i = from; i < to; i++) dst[i] = table[src[i]!]!;
}

function attendF32(q: Float32Array, k: Float32Array, v: Float32Array, dims: AttentionDims): Float32Array {
  const { tokens, heads, kvHeads, headDim: hd, startPos } = dims;
  if (hd > row.length) throw new RangeError(`attention: head dimension ${hd} above ${row.length}`);
  const scale = dims.scale ?? 1 / Math.sqrt(hd);
  const cap = dims.softcap;
  const group = heads / kvHeads;
  const stride = kvHeads * hd;
  const out = new Float32Array(tokens * heads * hd);
  if (scores.length < startPos + tokens) scores = new Float64Array(2 * (startPos + tokens));
  const s = scores;
  for (let t = 0; t < tokens; t++) {
    const n = startPos + t + 1;
    const lo = firstKey(n, dims.window);
    for (let h = 0; h < heads; h++) {
      const qBase = (t * heads + h) * hd;
      const kvBase = Math.floor(h / group) * hd;
      for (let d = 0; d < hd; d++) qRow[d] = q[qBase + d]!;
      let max = -Infinity;
      let j = lo;
      for (let b = kvBase + lo * stride; j + 4 <= n; j += 4, b += 4 * stride) {
        const b1 = b + stride, b2 = b1 + stride, b3 = b2 + stride;
        let d0 = 0, d1 = 0, d2 = 0, d3 = 0;
        for (let d = 0; d < hd; d++) {
          const x = qRow[d]!;
          d0 += x * k[b + d]!;
          d1 += x * k[b1 + d]!;
          d2 += x * k[b2 + d]!;
          d3 += x * k[b3 + d]!;
        }
        s[j] = softcap(d0 * scale, cap);
        s[j + 1] = softcap(d1 * scale, cap);
        s[j + 2] = softcap(d2 * scale, cap);
        s[j + 3] = softcap(d3 * scale, cap);
        max = Math.max(max, s[j]!, s[j + 1]!, s[j + 2]!, s[j + 3]!);
      }
      for (let b = kvBase + j * stride; j < n; j++, b += stride) {
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += qRow[d]! * k[b + d]!;
        s[j] = softcap(dot * scale, cap);
        max = Math.max(max, s[j]!);
      }
      for (let d = 0; d < hd; d++) row[d] = 0;
      let sum = 0;
      j = lo;
      for (let b = kvBase + lo * stride; j + 2 <= n; j += 2, b += 2 * stride) {
        const p0 = Math.exp(s[j]! - max);
        const p1 = Math.exp(s[j + 1]! - max);
        sum += p0;
        sum += p1;
        const b1 = b + stride;
        for (let d = 0; d < hd; d++) row[d] = row[d]! + p0 * v[b + d]! + p1 * v[b1 + d]!;
      }
      if (j < n) {
        const p = Math.exp(s[j]! - max);
        sum += p;
        const b = kvBase + j * stride;
        for (let d = 0; d < hd; d++) row[d] = row[d]! + p * v[b + d]!;
      }
      for (let d = 0; d < hd; d++) out[qBase + d] = row[d]! / sum;
    }
  }
  return out;
}
