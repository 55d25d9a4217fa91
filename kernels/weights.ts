// Weights on the GPU: packed or quantized on the CPU, split by rows so that no binding exceeds the
// adapter's limit, and the checks every linear kernel makes before it reads a weight.
import { AigridError } from '../protocol/index.ts';
import type { GpuContext } from './context.ts';
import { expectDtype, expectInteger, expectShape } from './guard.ts';
import { Q4_BLOCK, packF16, quantizeQ4, quantizeQ8, type ScaleDtype } from './quant.ts';
import { GGML_PLANES, isGgmlDtype, type DType, type GgmlDType, type GpuTensor } from './tensor.ts';

/** Weights uploaded from f32 values (uploadWeight). */
export type FloatWeightDtype = 'f32' | 'f16' | 'q8' | 'q4';
/** Every weight on the GPU: the GGML ones come from a file's blocks (uploadGgmlWeight). */
export type WeightDtype = FloatWeightDtype | GgmlDType;
/** The dtypes a user may ask weights to be converted to. */
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['f32', 'f16', 'q8', 'q4'];
/** GGML block formats kept as the file stores them (dequantized inside the kernels). */
export const GGML_WEIGHT_DTYPES: readonly GgmlDType[] = ['q8_0', 'q4_0', 'q5_0', 'q4_k', 'q6_k'];

/** Rows rowStart .. rowStart + rows of the weight, as one tensor [rows, K]. */
export interface WeightPart {
  tensor: GpuTensor;
  rowStart: number;
  rows: number;
}

/** A weight [N, K] (out x in); one part unless it is larger than one storage binding. */
export interface GpuWeight {
  shape: [number, number];
  dtype: WeightDtype;
  parts: WeightPart[];
}

export interface UploadWeightOptions {
  /** Largest binding a part may need (default and ceiling: the adapter's limits). */
  maxBindingBytes?: number;
  /** Scales of q8 / q4 weights (default f32). */
  scaleDtype?: ScaleDtype;
  label?: string;
}

function isWeightDtype(dtype: DType): dtype is FloatWeightDtype {
  return (WEIGHT_DTYPES as readonly string[]).includes(dtype);
}

/** The larger of the data and scale bindings of `rows` rows. */
export function partBytes(dtype: WeightDtype, rows: number, K: number, scaleDtype: ScaleDtype = 'f32'): number {
  const scaleBytes = (count: number) => (scaleDtype === 'f32' ? count * 4 : Math.ceil(count / 2) * 4);
  switch (dtype) {
    case 'f32':
      return rows * K * 4;
    case 'f16':
      return Math.ceil((rows * K) / 2) * 4;
    case 'q8':
      return Math.max(rows * Math.ceil(K / 4) * 4, scaleBytes(rows));
    case 'q4':
      return Math.max((rows * K) / 2, scaleBytes((rows * K) / Q4_BLOCK));
    case 'q8_0':
    case 'q4_0':
    case 'q5_0':
    case 'q4_k':
    case 'q6_k': {
      const plane = GGML_PLANES[dtype];
      const blocks = rows * Math.ceil(K / plane.elements);
      return Math.max(blocks * plane.quants, Math.ceil((blocks * plane.meta) / 4) * 4);
    }
  }
}

export function uploadWeight(
  ctx: GpuContext,
  data: Float32Array,
  shape: readonly [number, number],
  dtype: DType,
  options: UploadWeightOptions = {},
): GpuWeight {
  const [N, K] = shape;
  const label = options.label ?? 'weight';
  const scaleDtype = options.scaleDtype ?? 'f32';
  if (!isWeightDtype(dtype)) {
    throw new AigridError('ERR_DTYPE_UNSUPPORTED', `${label}: weights are ${WEIGHT_DTYPES.join(', ')}, got ${String(dtype)}`);
  }
  expectInteger('uploadWeight', 'N', N, 0);
  expectInteger('uploadWeight', 'K', K, 0);
  if (data.length !== N * K) throw new AigridError('ERR_SHAPE_MISMATCH', `${label}: ${data.length} values for [${N}, ${K}]`);
  if (dtype === 'q4' && K % Q4_BLOCK !== 0) throw new AigridError('ERR_SHAPE_MISMATCH', `${label}: q4 needs K % ${Q4_BLOCK} == 0, got K = ${K}`);

  const rowsPerPart = partRows(ctx, dtype, N, K, { ...options, label, scaleDtype });
  const parts: WeightPart[] = [];
  for (let rowStart = 0; rowStart < N; rowStart += rowsPerPart) {
    const rows = Math.min(rowsPerPart, N - rowStart);
    const rowsData = data.subarray(rowStart * K, (rowStart + rows) * K);
    const partLabel = `${label}[${parts.length}]`;
    parts.push({ tensor: uploadRows(ctx, rowsData, rows, K, dtype, scaleDtype, partLabel), rowStart, rows });
  }
  return { shape: [N, K], dtype, parts };
}

/** Rows per part so that no binding exceeds the adapter's limits or `maxBindingBytes`; ERR_GPU_LIMIT if one row does not fit. */
export function partRows(ctx: GpuContext, dtype: WeightDtype, N: number, K: number, options: UploadWeightOptions & { label: string }): number {
  const scaleDtype = options.scaleDtype ?? 'f32';
  const { maxStorageBufferBindingSize, maxBufferSize } = ctx.limits;
  let limitName = maxBufferSize < maxStorageBufferBindingSize ? 'maxBufferSize' : 'maxStorageBufferBindingSize';
  let limit = Math.min(maxStorageBufferBindingSize, maxBufferSize);
  if (options.maxBindingBytes !== undefined && options.maxBindingBytes < limit) {
    limitName = 'maxBindingBytes';
    limit = options.maxBindingBytes;
  }
  const rows = fittingRows(dtype, N, K, scaleDtype, limit);
  if (rows === 0) {
    throw new AigridError('ERR_GPU_LIMIT', `${options.label}: one row of [${N}, ${K}] ${dtype} needs ${partBytes(dtype, 1, K, scaleDtype)} bytes, over ${limitName} (${limit})`);
  }
  return rows;
}

/** The most rows (up to N) whose bindings all fit in `limit` bytes; 0 when one row does not. */
function fittingRows(dtype: WeightDtype, N: number, K: number, scaleDtype: ScaleDtype, limit: number): number {
  if (N === 0) return 1;
  const perRow = partBytes(dtype, 1, K, scaleDtype);
  let rows = perRow === 0 ? N : Math.min(N, Math.floor(limit / perRow));
  // Packing rounds up to whole words: step down until the rounded size fits.
  while (rows > 0 && partBytes(dtype, rows, K, scaleDtype) > limit) rows--;
  return rows;
}

function uploadRows(ctx: GpuContext, rows: Float32Array, N: number, K: number, dtype: FloatWeightDtype, scaleDtype: ScaleDtype, label: string): GpuTensor {
  switch (dtype) {
    case 'f32':
      return ctx.tensor([N, K], 'f32', rows, label);
    case 'f16':
      return ctx.tensor([N, K], 'f16', packF16(rows), label);
    case 'q8':
    case 'q4': {
      const q = dtype === 'q8' ? quantizeQ8(rows, N, K, scaleDtype) : quantizeQ4(rows, N, K, scaleDtype);
      return ctx.quantizedTensor([N, K], dtype, q.data, q.scales, scaleDtype, label);
    }
  }
}

/** Which f16 path: 'auto' takes native f16 arithmetic where the adapter has it. */
export type F16Mode = 'auto' | 'native' | 'packed';

export function useNativeF16(ctx: GpuContext, mode: F16Mode, op: string): boolean {
  if (mode === 'native' && !ctx.f16) {
    throw new AigridError('ERR_GPU_FEATURE', `${op}: the native f16 path needs shader-f16, which this adapter lacks (or it is disabled)`);
  }
  return mode === 'native' || (mode === 'auto' && ctx.f16);
}

/** Sizes of one linear dispatch: x [M, K] times one weight part [N, K] into columns col0.. of out. */
export interface LinearDims {
  M: number;
  N: number;
  K: number;
  ldo: number;
  col0: number;
}

/** Checks x, a weight tensor of one of `dtypes` and out for out[:, col0 : col0 + N] = x · wᵀ. */
export function checkLinear(op: string, x: GpuTensor, w: GpuTensor, out: GpuTensor, col0: number, dtypes: readonly DType[] = WEIGHT_DTYPES): LinearDims {
  expectDtype(op, 'w', w, dtypes);
  expectShape(op, 'w', w, [null, null]);
  const [N, K] = w.shape as [number, number];
  expectDtype(op, 'x', x, ['f32']);
  expectShape(op, 'x', x, [null, K]);
  const M = x.shape[0]!;
  expectDtype(op, 'out', out, ['f32']);
  expectShape(op, 'out', out, [M, null]);
  const ldo = out.shape[1]!;
  expectInteger(op, 'column offset', col0, 0);
  if (col0 + N > ldo) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `${op}: columns ${col0}..${col0 + N} of the weight part do not fit out [${M}, ${ldo}]`);
  }
  if ((w.dtype === 'q8' || w.dtype === 'q4') && !w.scales) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: ${w.dtype} weight ${w.label} has no scales (create it with ctx.quantizedTensor)`);
  }
  if (isGgmlDtype(w.dtype)) {
    const { elements } = GGML_PLANES[w.dtype];
    if (K % elements !== 0) throw new AigridError('ERR_SHAPE_MISMATCH', `${op}: ${w.dtype} weight ${w.label} needs K % ${elements} == 0, got K = ${K}`);
    if (!w.scales) throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: ${w.dtype} weight ${w.label} has no meta plane (upload it with uploadGgmlWeight)`);
  }
  if (out.buffer === x.buffer || out.buffer === w.buffer) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: out must not share a buffer with x or w`);
  }
  return { M, N, K, ldo, col0 };
}

/** The Params uniform of matvec.wgsl and matmul.wgsl (eps: a fused RMSNorm's, else unused). */
export function linearParams(d: LinearDims, w: GpuTensor, eps = 0): Uint32Array {
  const words = new Uint32Array([d.M, d.N, d.K, d.ldo, d.col0, w.scaleDtype === 'f16' ? 1 : 0, 0, 0]);
  new Float32Array(words.buffer, 24, 1)[0] = eps;
  return words;
}
