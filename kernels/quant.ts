// Weight formats on the CPU: f16 conversion and packing, q8 / q4 quantization and their inverses.
// Plain TypeScript (no GPU): used by uploadWeight, by the CPU references and by the tests.
//
// Layouts (what the WGSL kernels decode):
// - f16: element i in word i >> 1, low half first (bits 0..15 = element 2j, bits 16..31 = 2j + 1),
//   as unpack2x16float reads it. Rows are not padded: a weight [N, K] is N * K halves in a row.
// - q8: row n takes ceil(K / 4) words; element k of the row is byte k & 3 (bits 8 * (k & 3)) of
//   word k >> 2, two's complement int8. Padding bytes are zero. One scale per row: w = q * scale.
// - q4: row n takes K / 32 blocks of 4 words (16 bytes); element j of a block is in word j >> 3,
//   bits 4 * (j & 7): word 0 holds elements 0..7 from the low nibble up. w = (nibble - 8) * scale,
//   one scale per block, block b of row n at index n * (K / 32) + b.
// - scales: f32, or f16 packed two per word (scale i in half i, as above).
import { AigridError, f16ToF32, f32ToF16 } from '../protocol/index.ts';

export { f16ToF32, f32ToF16 };

export type ScaleDtype = 'f32' | 'f16';

export interface Quantized {
  data: Uint32Array;
  /** Float32Array for f32 scales, Uint32Array of packed halves for f16 scales. */
  scales: Float32Array | Uint32Array;
  scaleDtype: ScaleDtype;
}

export const Q4_BLOCK = 32;

/** `value` rounded to the nearest f16, as an f32 number. */
export function roundF16(value: number): number {
  return f16ToF32(f32ToF16(value));
}

/** Every element rounded to f16 (what the GPU sees of an f16 tensor). */
export function roundF16Array(values: ArrayLike<number>): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = roundF16(values[i]!);
  return out;
}

/** Halves packed two per word, low half first; an odd count leaves the last high half zero. */
export function packF16(values: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(Math.ceil(values.length / 2));
  for (let i = 0; i < values.length; i++) out[i >> 1]! |= f32ToF16(values[i]!) << ((i & 1) * 16);
  return out;
}

export function unpackF16(words: Uint32Array, count = words.length * 2): Float32Array {
  if (count > words.length * 2) throw new AigridError('ERR_INVALID_ARGUMENT', `unpackF16: ${count} halves from ${words.length} words`);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = f16ToF32((words[i >> 1]! >>> ((i & 1) * 16)) & 0xffff);
  return out;
}

function checkMatrix(what: string, w: ArrayLike<number>, N: number, K: number): void {
  if (!Number.isInteger(N) || !Number.isInteger(K) || N < 0 || K < 0 || w.length !== N * K) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `${what}: ${w.length} values for [${N}, ${K}]`);
  }
}

/** Scales stored in their dtype, and the values the kernels will actually multiply by. */
function storeScales(raw: Float32Array, scaleDtype: ScaleDtype): { stored: Float32Array | Uint32Array; used: Float32Array } {
  if (scaleDtype === 'f32') return { stored: raw, used: raw };
  const used = roundF16Array(raw);
  if (!used.every(Number.isFinite)) throw new AigridError('ERR_INVALID_ARGUMENT', 'a scale exceeds the f16 range; use f32 scales');
  return { stored: packF16(raw), used };
}

/** Symmetric per-row int8: scale = max|w| / 127, q = round(w / scale) in [-127, 127]. */
export function quantizeQ8(w: ArrayLike<number>, N: number, K: number, scaleDtype: ScaleDtype = 'f32'): Quantized {
  checkMatrix('quantizeQ8', w, N, K);
  const rowWords = Math.ceil(K / 4);
  const data = new Uint32Array(N * rowWords);
  const raw = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    let maxAbs = 0;
    for (let k = 0; k < K; k++) maxAbs = Math.max(maxAbs, Math.abs(w[n * K + k]!));
    raw[n] = maxAbs / 127;
  }
  const { stored, used } = storeScales(raw, scaleDtype);
  for (let n = 0; n < N; n++) {
    const scale = used[n]!;
    for (let k = 0; k < K; k++) {
      const q = scale > 0 ? Math.max(-127, Math.min(127, Math.round(w[n * K + k]! / scale))) : 0;
      data[n * rowWords + (k >> 2)]! |= (q & 0xff) << ((k & 3) * 8);
    }
  }
  return { data, scales: stored, scaleDtype };
}

/** Symmetric per-block 4-bit: scale = max|w| / 7, nibble = clamp(round(w / scale) + 8, 0, 15). */
export function quantizeQ4(w: ArrayLike<number>, N: number, K: number, scaleDtype: ScaleDtype = 'f32'): Quantized {
  checkMatrix('quantizeQ4', w, N, K);
  if (K % Q4_BLOCK !== 0) throw new AigridError('ERR_SHAPE_MISMATCH', `q4 needs K % ${Q4_BLOCK} == 0, got K = ${K}`);
  const blocks = (N * K) / Q4_BLOCK;
  const data = new Uint32Array(blocks * 4);
  const raw = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let maxAbs = 0;
    for (let j = 0; j < Q4_BLOCK; j++) maxAbs = Math.max(maxAbs, Math.abs(w[b * Q4_BLOCK + j]!));
    raw[b] = maxAbs / 7;
  }
  const { stored, used } = storeScales(raw, scaleDtype);
  for (let b = 0; b < blocks; b++) {
    const scale = used[b]!;
    for (let j = 0; j < Q4_BLOCK; j++) {
      const q = scale > 0 ? Math.max(0, Math.min(15, Math.round(w[b * Q4_BLOCK + j]! / scale) + 8)) : 8;
      data[b * 4 + (j >> 3)]! |= q << ((j & 7) * 4);
    }
  }
  return { data, scales: stored, scaleDtype };
}

function scaleValues(scales: Float32Array | Uint32Array, scaleDtype: ScaleDtype, count: number): Float32Array {
  if (scaleDtype === 'f32') {
    if (!(scales instanceof Float32Array)) throw new AigridError('ERR_INVALID_ARGUMENT', 'f32 scales must be a Float32Array');
    return scales;
  }
  return unpackF16(scales instanceof Uint32Array ? scales : new Uint32Array(scales.buffer, scales.byteOffset, scales.length), count);
}

export function dequantizeQ8(data: Uint32Array, scales: Float32Array | Uint32Array, N: number, K: number, scaleDtype: ScaleDtype = 'f32'): Float32Array {
  const rowWords = Math.ceil(K / 4);
  const s = scaleValues(scales, scaleDtype, N);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const q = ((data[n * rowWords + (k >> 2)]! >>> ((k & 3) * 8)) << 24) >> 24; // sign-extend the byte
      out[n * K + k] = q * s[n]!;
    }
  }
  return out;
}

export function dequantizeQ4(data: Uint32Array, scales: Float32Array | Uint32Array, N: number, K: number, scaleDtype: ScaleDtype = 'f32'): Float32Array {
  const blocks = (N * K) / Q4_BLOCK;
  const s = scaleValues(scales, scaleDtype, blocks);
  const out = new Float32Array(N * K);
  for (let b = 0; b < blocks; b++) {
    for (let j = 0; j < Q4_BLOCK; j++) {
      const q = (data[b * 4 + (j >> 3)]! >>> ((j & 7) * 4)) & 0xf;
      out[b * Q4_BLOCK + j] = (q - 8) * s[b]!;
    }
  }
  return out;
}

/** The weights a kernel multiplies by after storing `w` as `dtype`: the reference for its results. */
export function storedWeights(w: Float32Array, N: number, K: number, dtype: 'f32' | 'f16' | 'q8' | 'q4', scaleDtype: ScaleDtype = 'f32'): Float32Array {
  checkMatrix('storedWeights', w, N, K);
  switch (dtype) {
    case 'f32':
      return w;
    case 'f16':
      return roundF16Array(w);
    case 'q8': {
      const q = quantizeQ8(w, N, K, scaleDtype);
      return dequantizeQ8(q.data, q.scales, N, K, scaleDtype);
    }
    case 'q4': {
      const q = quantizeQ4(w, N, K, scaleDtype);
      return dequantizeQ4(q.data, q.scales, N, K, scaleDtype);
    }
  }
}
