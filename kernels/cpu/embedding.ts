import { f16ToF32 } from '../quant.ts';

/**
 * out[t] = table[ids[t]] for a table [vocab, hidden]: f32 values, or f16 packed two per u32.
 * An id outside the vocabulary gives a zero row, as on the GPU.
 */
export function embeddingRef(ids: Uint32Array, table: Float32Array | Uint32Array, vocab: number, hidden: number): Float32Array {
  const out = new Float32Array(ids.length * hidden);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (id >= vocab) continue;
    for (let h = 0; h < hidden; h++) {
      const e = id * hidden + h;
      out[t * hidden + h] = table instanceof Float32Array ? table[e]! : f16ToF32((table[e >> 1]! >>> ((e & 1) * 16)) & 0xffff);
    }
  }
  return out;
}
