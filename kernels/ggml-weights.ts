// GGML-quantized weights on the GPU, kept in their block formats and dequantized by the kernels
// (ggml-linear.ts). Each block is split losslessly into two planes (tensor.ts GGML_PLANES): its
// quants, whole 16-byte vectors, in the tensor's buffer, and the rest (scales, mins) in `scales`.
// Why planes rather than padding each block to whole words (36 / 20 / 212 bytes): decode is bound
// by memory, and planes read exactly the file's bytes (padding costs 6% on Q8_0, 11% on Q4_0),
// while every lane still loads aligned 16-byte vectors, neighbouring lanes neighbouring vectors.
import { AigridError } from '../protocol/index.ts';
import type { GpuContext } from './context.ts';
import { GGML_TYPE, ggmlRowBytes, ggmlTypeName, isSupportedGgmlType, type GgmlBlocks, type GgmlType } from './ggml-quants.ts';
import { expectInteger } from './guard.ts';
import { GGML_PLANES, type GgmlDType, type GpuTensor } from './tensor.ts';
import { partRows, type GpuWeight, type WeightPart } from './weights.ts';

const DTYPES: Partial<Record<GgmlType, GgmlDType>> = {
  [GGML_TYPE.Q8_0]: 'q8_0',
  [GGML_TYPE.Q4_0]: 'q4_0',
  [GGML_TYPE.Q5_0]: 'q5_0',
  [GGML_TYPE.Q4_K]: 'q4_k',
  [GGML_TYPE.Q6_K]: 'q6_k',
};

/** Where the meta bytes sit in a file block: Q8_0, Q4_0, Q5_0 and Q4_K lead with them, Q6_K ends with d. */
const META_FIRST: Record<GgmlDType, boolean> = { q8_0: true, q4_0: true, q5_0: true, q4_k: true, q6_k: false };

/** The kernels' dtype for a GGML type, or undefined when they do not read it (F32, F16, BF16). */
export function ggmlDtype(type: number): GgmlDType | undefined {
  return isSupportedGgmlType(type) ? DTYPES[type] : undefined;
}

export interface UploadGgmlOptions {
  /** Largest binding a part may need (default and ceiling: the adapter's limits). */
  maxBindingBytes?: number;
  label?: string;
}

/** A GGML matrix [rows = N, cols = K] (out x in) as a GpuWeight, split by rows to fit the bindings. */
export function uploadGgmlWeight(ctx: GpuContext, m: GgmlBlocks, options: UploadGgmlOptions = {}): GpuWeight {
  const label = options.label ?? 'weight';
  const dtype = ggmlDtype(m.type);
  if (!dtype) {
    throw new AigridError('ERR_DTYPE_UNSUPPORTED', `${label}: GGML ${ggmlTypeName(m.type)} has no GPU kernel; supported: Q8_0, Q4_0, Q5_0, Q4_K, Q6_K`);
  }
  expectInteger('uploadGgmlWeight', 'rows', m.rows, 0);
  expectInteger('uploadGgmlWeight', 'cols', m.cols, 0);
  const rowBytes = ggmlRowBytes(m.type, m.cols); // throws unless cols is whole blocks
  if (m.bytes.byteLength !== m.rows * rowBytes) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `${label}: [${m.rows}, ${m.cols}] ${dtype} takes ${m.rows * rowBytes} bytes, got ${m.bytes.byteLength}`);
  }
  const [N, K] = [m.rows, m.cols];
  const rowsPerPart = partRows(ctx, dtype, N, K, { maxBindingBytes: options.maxBindingBytes, label });
  const parts: WeightPart[] = [];
  for (let rowStart = 0; rowStart < N; rowStart += rowsPerPart) {
    const rows = Math.min(rowsPerPart, N - rowStart);
    const bytes = m.bytes.subarray(rowStart * rowBytes, (rowStart + rows) * rowBytes);
    parts.push({ tensor: uploadPart(ctx, dtype, bytes, rows, K, `${label}[${parts.length}]`), rowStart, rows });
  }
  return { shape: [N, K], dtype, parts };
}

/** The two planes of `blocks` file blocks; meta rounded up to whole words for writeBuffer. */
export function splitPlanes(dtype: GgmlDType, bytes: Uint8Array, blocks: number): { quants: Uint8Array; meta: Uint8Array } {
  const { quants: q, meta: mb } = GGML_PLANES[dtype];
  const block = q + mb;
  const quants = new Uint8Array(blocks * q);
  const meta = new Uint8Array(Math.ceil((blocks * mb) / 4) * 4);
  const [metaAt, quantsAt] = META_FIRST[dtype] ? [0, mb] : [q, 0];
  for (let b = 0, at = 0; b < blocks; b++, at += block) {
    quants.set(bytes.subarray(at + quantsAt, at + quantsAt + q), b * q);
    meta.set(bytes.subarray(at + metaAt, at + metaAt + mb), b * mb);
  }
  return { quants, meta };
}

function uploadPart(ctx: GpuContext, dtype: GgmlDType, bytes: Uint8Array, rows: number, K: number, label: string): GpuTensor {
  const { quants, meta } = splitPlanes(dtype, bytes, (rows * K) / GGML_PLANES[dtype].elements);
  const main = ctx.tensor([rows, K], dtype, quants, label);
  ctx.checkBindingSize(`${label}.scales`, meta.byteLength);
  const scales = ctx.device.createBuffer({
    label: `${label}.scales`,
    size: Math.max(4, meta.byteLength),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  ctx.device.queue.writeBuffer(scales, 0, meta.buffer, meta.byteOffset, meta.byteLength);
  return { ...main, scales };
}
