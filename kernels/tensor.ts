// A tensor on the GPU: a buffer with its shape and dtype written beside it.
import { AigridError } from '../protocol/index.ts';

/**
 * Storage formats. f32: one float per element. f16: two halves packed per u32 (readable on every
 * adapter with unpack2x16float; native f16 arithmetic needs shader-f16). q8: int8 weights [N, K]
 * packed four per u32, rows padded to whole words, one f32 scale per row in `scales`. q4: 4-bit
 * weights [N, K] in blocks of 32 along K (value = (q - 8) * scale), one scale per block in `scales`.
 * u32 / i32: integer tensors (token ids, indices).
 */
export type DType = 'f32' | 'f16' | 'q8' | 'q4' | 'u32' | 'i32';

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
  }
}

function matrixDims(shape: readonly number[], dtype: DType): [number, number] {
  if (shape.length !== 2) throw new AigridError('ERR_SHAPE_MISMATCH', `${dtype} tensors are 2-D [N, K], got [${shape.join(', ')}]`);
  return [shape[0]!, shape[1]!];
}
