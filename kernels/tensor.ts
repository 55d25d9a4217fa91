// A tensor on the GPU: a buffer with its shape and dtype written beside it.
import { AigridError } from '../protocol/index.ts';

/**
 * Storage formats. f32: one float per element. f16: two halves packed per u32 (readable on every
 * adapter with unpack2x16float; native f16 arithmetic needs shader-f16). q8: int8 weights [N, K]
 * packed four per u32, rows padded to whole words, one f32 scale per row in `scales`. q4: 4-bit
 * weights [N, K] in blocks of 32 along K (value = (q - 8) * scale), one scale per block in `scales`.
 * q8_0 / q4_0 / q5_0 / q4_k / q6_k: GGML blocks in two planes (see GGML_PLANES and ggml-weights.ts); `buffer`
 * holds the quants, `scales` the rest of each block. u32 / i32: integer tensors (token ids, indices).
 */
export type DType = 'f32' | 'f16' | 'q8' | 'q4' | GgmlDType | 'u32' | 'i32';

export type GgmlDType = 'q8_0' | 'q4_0' | 'q5_0' | 'q4_k' | 'q6_k';

/**
 * A GGML block as uploaded, split losslessly into two planes: `quants` bytes (whole 16-byte
 * vectors) in `buffer`, `meta` bytes in `scales`, per block of `elements` along a row.
 * q8_0 / q4_0: the int8 / nibble quants, then the f16 scale d. q4_k: the 128 bytes of nibbles, then
 * d, dmin and the 12 bytes of 6-bit scales and mins (the block's first 16 bytes). q6_k: ql, qh and
 * the 16 int8 scales (the block's first 208 bytes), then d. Metas of 2 bytes pack two per word.
 * q5_0: the 16 bytes of nibbles, then d and qh as the file has them (the block's first 6 bytes): the
 * fifth bits stay beside d rather than costing the quants plane a second, mostly empty vector, and
 * 6 bytes are three halves, so d is half 3b and qh halves 3b + 1 and 3b + 2 of the plane, all aligned.
 */
export const GGML_PLANES: Readonly<Record<GgmlDType, { elements: number; quants: number; meta: number }>> = {
  q8_0: { elements: 32, quants: 32, meta: 2 },
  q4_0: { elements: 32, quants: 16, meta: 2 },
  q5_0: { elements: 32, quants: 16, meta: 6 },
  q4_k: { elements: 256, quants: 128, meta: 16 },
  q6_k: { elements: 256, quants: 208, meta: 2 },
};

export function isGgmlDtype(dtype: string): dtype is GgmlDType {
  return Object.hasOwn(GGML_PLANES, dtype);
}

export interface GpuTensor {
  readonly label: string;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly buffer: GPUBuffer;
  /** Bytes of `buffer` that hold data (buffers are rounded up to 4 bytes). */
  readonly byteLength: number;
  /** q8 / q4 only: per-row (q8) or per-block (q4) scales. */
  readonly scales?: GPUBuffer;
  readonly scaleDtype?: 'f32' | 'f16';
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new AigridError('ERR_SHAPE_MISMATCH', `bad dimension ${d} in [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

/** Bytes of the main buffer for a tensor of this shape and dtype (before rounding to 4). */
export function dataBytes(shape: readonly number[], dtype: DType): number {
  const n = elementCount(shape);
  switch (dtype) {
    case 'f32':
    case 'u32':
    case 'i32':
      return n * 4;
    case 'f16':
      return Math.ceil(n / 2) * 4;
    case 'q8': {
      const [rows, cols] = matrixDims(shape, dtype);
      return rows * Math.ceil(cols / 4) * 4;
    }
    case 'q4': {
      const [rows, cols] = matrixDims(shape, dtype);
      if (cols % 32 !== 0) throw new AigridError('ERR_SHAPE_MISMATCH', `q4 needs K % 32 == 0, got K = ${cols}`);
      return rows * (cols / 32) * 16;
    }
    case 'q8_0':
    case 'q4_0':
    case 'q5_0':
    case 'q4_k':
    case 'q6_k': {
      const [rows, cols] = matrixDims(shape, dtype);
      const plane = GGML_PLANES[dtype];
      if (cols % plane.elements !== 0) throw new AigridError('ERR_SHAPE_MISMATCH', `${dtype} needs K % ${plane.elements} == 0, got K = ${cols}`);
      return rows * (cols / plane.elements) * plane.quants;
    }
  }
}

function matrixDims(shape: readonly number[], dtype: DType): [number, number] {
  if (shape.length !== 2) throw new AigridError('ERR_SHAPE_MISMATCH', `${dtype} tensors are 2-D [N, K], got [${shape.join(', ')}]`);
  return [shape[0]!, shape[1]!];
}
