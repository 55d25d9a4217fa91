// The GGML tensor formats a GGUF file may hold, and their exact dequantization to f32.
//
// Every format is a run of fixed-size blocks, little-endian, with no padding between blocks; a
// tensor row always holds whole blocks. "f16" below is an IEEE half, "bf16" the top 16 bits of an f32.
// - F32 / F16 / BF16: one element per block, 4 / 2 / 2 bytes.
// - Q8_0 (32 elements, 34 bytes): f16 scale d, then 32 int8 q; w = q * d.
// - Q4_0 (32 elements, 18 bytes): f16 scale d, then 16 bytes of nibbles; byte j holds element j in its
//   low nibble and element j + 16 in its high nibble; w = (nibble - 8) * d.
// - Q5_0 (32 elements, 22 bytes): f16 scale d, 4 bytes qh, then 16 bytes of nibbles laid out as in
//   Q4_0; bit j of qh (a little-endian u32) is the fifth bit of element j; w = ((nibble | bit << 4) - 16) * d.
// - Q4_K (256 elements, 144 bytes): f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for the eight
//   32-element sub-blocks, then 128 bytes of nibbles. Sub-block s has scale sc and min m:
//   s < 4: sc = byte[s] & 63, m = byte[s + 4] & 63;
//   s >= 4: their low 4 bits are byte[s + 4] (sc in the low nibble, m in the high one) and their top
//   2 bits ride in bits 6..7 of byte[s - 4] (sc) and byte[s] (m).
//   The nibbles come in four 32-byte groups; group g holds sub-block 2g in its low nibbles and
//   sub-block 2g + 1 in its high nibbles. w = d * sc * nibble - dmin * m.
// - Q6_K (256 elements, 210 bytes): 128 bytes ql (low 4 bits), 64 bytes qh (top 2 bits), 16 int8
//   scales (one per 16 elements), then f16 d. Each 128-element half uses 64 bytes of ql and 32 of qh;
//   within a half, for l in 0..31: ql[l] low / high nibble = elements l / l + 64, ql[l + 32] low / high
//   = elements l + 32 / l + 96, and qh[l] bits 0-1, 2-3, 4-5, 6-7 are the top bits of elements l,
//   l + 32, l + 64, l + 96. w = d * scale * (q - 32).
//
// The arithmetic is f32 step by step in the reference order (Math.fround after each operation), so
// the results equal the C reference bit for bit. Every product that feeds an addition is exact here
// (an f16 scale times small integers), so a build that fuses multiply-add gives the same bits too.
import { AigridError } from '../protocol/errors.ts';
import { f16ToF32 } from './quant.ts';

export const GGML_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q5_0: 6, Q8_0: 8, Q4_K: 12, Q6_K: 14, BF16: 30 } as const;

export type GgmlType = (typeof GGML_TYPE)[keyof typeof GGML_TYPE];

export const GGML_BLOCK: Record<GgmlType, { elements: number; bytes: number }> = {
  [GGML_TYPE.F32]: { elements: 1, bytes: 4 },
  [GGML_TYPE.F16]: { elements: 1, bytes: 2 },
  [GGML_TYPE.Q4_0]: { elements: 32, bytes: 18 },
  [GGML_TYPE.Q5_0]: { elements: 32, bytes: 22 },
  [GGML_TYPE.Q8_0]: { elements: 32, bytes: 34 },
  [GGML_TYPE.Q4_K]: { elements: 256, bytes: 144 },
  [GGML_TYPE.Q6_K]: { elements: 256, bytes: 210 },
  [GGML_TYPE.BF16]: { elements: 1, bytes: 2 },
};

const TYPE_NAMES = new Map<number, string>(Object.entries(GGML_TYPE).map(([name, id]) => [id, name]));

export function ggmlTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `type ${type}`;
}

export function isSupportedGgmlType(type: number): type is GgmlType {
  return TYPE_NAMES.has(type);
}

function blockOf(type: number): { elements: number; bytes: number } {
  if (!isSupportedGgmlType(type)) {
    const names = [...TYPE_NAMES.values()].join(', ');
    throw new AigridError('ERR_DTYPE_UNSUPPORTED', `GGML ${ggmlTypeName(type)} is not supported; supported: ${names}`);
  }
  return GGML_BLOCK[type];
}

/** Bytes that `elements` values of `type` take; `elements` must be whole blocks. */
export function ggmlByteLength(type: number, elements: number): number {
  const block = blockOf(type);
  if (!Number.isSafeInteger(elements) || elements < 0 || elements % block.elements !== 0) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `${ggmlTypeName(type)}: ${elements} elements is not a whole number of ${block.elements}-element blocks`);
  }
  return (elements / block.elements) * block.bytes;
}

const f32 = Math.fround;

function f16At(bytes: Uint8Array, at: number): number {
  return f16ToF32(bytes[at]! | (bytes[at + 1]! << 8));
}

/** The 6-bit scale and min of Q4_K sub-block `s` from the 12 packed bytes at `at`. */
export function q4kScaleMin(bytes: Uint8Array, at: number, s: number): [scale: number, min: number] {
  if (s < 4) return [bytes[at + s]! & 63, bytes[at + s + 4]! & 63];
  const low = bytes[at + s + 4]!;
  return [(low & 0xf) | ((bytes[at + s - 4]! >> 6) << 4), (low >> 4) | ((bytes[at + s]! >> 6) << 4)];
}

function dequantizeQ8_0(bytes: Uint8Array, out: Float32Array): void {
  for (let b = 0, at = 0; b < out.length; b += 32, at += 34) {
    const d = f16At(bytes, at);
    for (let j = 0; j < 32; j++) out[b + j] = f32(((bytes[at + 2 + j]! << 24) >> 24) * d); // sign-extend the int8
  }
}

function dequantizeQ4_0(bytes: Uint8Array, out: Float32Array): void {
  for (let b = 0, at = 0; b < out.length; b += 32, at += 18) {
    const d = f16At(bytes, at);
    for (let j = 0; j < 16; j++) {
      const q = bytes[at + 2 + j]!;
      out[b + j] = f32(((q & 0xf) - 8) * d);
      out[b + j + 16] = f32(((q >> 4) - 8) * d);
    }
  }
}

function dequantizeQ5_0(bytes: Uint8Array, out: Float32Array): void {
  for (let b = 0, at = 0; b < out.length; b += 32, at += 22) {
    const d = f16At(bytes, at);
    const qh = (bytes[at + 2]! | (bytes[at + 3]! << 8) | (bytes[at + 4]! << 16) | (bytes[at + 5]! << 24)) >>> 0;
    for (let j = 0; j < 16; j++) {
      const q = bytes[at + 6 + j]!;
      out[b + j] = f32((((q & 0xf) | (((qh >>> j) & 1) << 4)) - 16) * d);
      out[b + j + 16] = f32((((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) * d);
    }
  }
}

function dequantizeQ4_K(bytes: Uint8Array, out: Float32Array): void {
  for (let b = 0, at = 0; b < out.length; b += 256, at += 144) {
    const d = f16At(bytes, at);
    const dmin = f16At(bytes, at + 2);
    for (let g = 0; g < 4; g++) {
      const [sc1, m1] = q4kScaleMin(bytes, at + 4, 2 * g);
      const [sc2, m2] = q4kScaleMin(bytes, at + 4, 2 * g + 1);
      const d1 = f32(d * sc1), min1 = f32(dmin * m1);
      const d2 = f32(d * sc2), min2 = f32(dmin * m2);
      const qs = at + 16 + 32 * g, y = b + 64 * g;
      for (let l = 0; l < 32; l++) {
        const q = bytes[qs + l]!;
        out[y + l] = f32(f32(d1 * (q & 0xf)) - min1);
        out[y + 32 + l] = f32(f32(d2 * (q >> 4)) - min2);
      }
    }
  }
}

function dequantizeQ6_K(bytes: Uint8Array, out: Float32Array): void {
  const scales = new Float32Array(16); // d * scale, one per 16 elements
  for (let b = 0, at = 0; b < out.length; b += 256, at += 210) {
    const d = f16At(bytes, at + 208);
    for (let s = 0; s < 16; s++) scales[s] = f32(d * ((bytes[at + 192 + s]! << 24) >> 24)); // int8 scales
    for (let half = 0; half < 2; half++) {
      const ql = at + 64 * half, qh = at + 128 + 32 * half, y = b + 128 * half;
      for (let l = 0; l < 32; l++) {
        const lo = bytes[ql + l]!, lo32 = bytes[ql + l + 32]!, hi = bytes[qh + l]!;
        const s = 8 * half + (l >> 4);
        out[y + l] = f32(scales[s]! * (((lo & 0xf) | ((hi & 3) << 4)) - 32));
        out[y + l + 32] = f32(scales[s + 2]! * (((lo32 & 0xf) | (((hi >> 2) & 3) << 4)) - 32));
        out[y + l + 64] = f32(scales[s + 4]! * (((lo >> 4) | (((hi >> 4) & 3) << 4)) - 32));
        out[y + l + 96] = f32(scales[s + 6]! * (((lo32 >> 4) | (((hi >> 6) & 3) << 4)) - 32));
      }
    }
  }
}

/** `elements` values of `type` decoded from `bytes` (a view at any offset), exactly. */
export function dequantizeGgml(type: number, bytes: Uint8Array, elements: number): Float32Array {
  const length = ggmlByteLength(type, elements);
  if (bytes.byteLength !== length) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `${ggmlTypeName(type)}: ${elements} elements take ${length} bytes, got ${bytes.byteLength}`);
  }
  const out = new Float32Array(elements);
  switch (type as GgmlType) {
    case GGML_TYPE.F32:
      // A byte copy keeps every bit (NaN payloads too); JS engines are little-endian like the file.
      new Uint8Array(out.buffer).set(bytes);
      break;
    case GGML_TYPE.F16:
      for (let i = 0; i < elements; i++) out[i] = f16At(bytes, 2 * i);
      break;
    case GGML_TYPE.BF16: {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < elements; i++) bits[i] = ((bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) << 16) >>> 0;
      break;
    }
    case GGML_TYPE.Q8_0: dequantizeQ8_0(bytes, out); break;
    case GGML_TYPE.Q4_0: dequantizeQ4_0(bytes, out); break;
    case GGML_TYPE.Q5_0: dequantizeQ5_0(bytes, out); break;
    case GGML_TYPE.Q4_K: dequantizeQ4_K(bytes, out); break;
    case GGML_TYPE.Q6_K: dequantizeQ6_K(bytes, out); break;
  }
  return out;
}

/** A [rows, cols] tensor decoded row-major; each row must hold whole blocks, as GGML requires. */
export function dequantizeGgmlRows(type: number, bytes: Uint8Array, rows: number, cols: number): Float32Array {
  const block = blockOf(type);
  if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(cols) || cols < 0 || cols % block.elements !== 0) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `${ggmlTypeName(type)}: a [${rows}, ${cols}] tensor needs rows of whole ${block.elements}-element blocks`);
  }
  return dequantizeGgml(type, bytes, rows * cols);
}

/** The block-quantized types (not the float ones), which weights keep as they are stored. */
export function isQuantizedGgml(type: number): boolean {
  return type === GGML_TYPE.Q8_0 || type === GGML_TYPE.Q4_0 || type === GGML_TYPE.Q5_0 || type === GGML_TYPE.Q4_K
    || type === GGML_TYPE.Q6_K;
}

/** A GGML-quantized matrix [rows, cols] (out x in) as its file stores it: rows of whole blocks. */
export interface GgmlBlocks {
  type: GgmlType;
  rows: number;
  cols: number;
  bytes: Uint8Array;
}

/** Bytes of one row of `cols` elements. */
export function ggmlRowBytes(type: GgmlType, cols: number): number {
  return ggmlByteLength(type, cols);
}

/** Rows [from, from + count) of a quantized matrix, sharing its bytes (rows are independent). */
export function sliceGgmlRows(m: GgmlBlocks, from: number, count: number): GgmlBlocks {
  if (!Number.isInteger(from) || !Number.isInteger(count) || from < 0 || count < 0 || from + count > m.rows) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `rows ${from}..${from + count} of a ${m.rows}-row ${ggmlTypeName(m.type)} matrix`);
  }
  const row = ggmlRowBytes(m.type, m.cols);
  return { type: m.type, rows: count, cols: m.cols, bytes: m.bytes.subarray(from * row, (from + count) * row) };
}
