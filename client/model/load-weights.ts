// Reads a set of checkpoint tensors after checking their dtypes and shapes from the headers alone,
// so a wrong checkpoint fails before its bytes are downloaded, and refuses non-finite values so a
// damaged file can never put NaN into the activations.
import { AigridError } from '../../protocol/index.ts';
import { dequantizeGgml, ggmlTypeName, type GgmlBlocks } from '../../kernels/ggml-quants.ts';
import { f16ToF32 } from '../../kernels/quant.ts';
import { assertFloatDtype } from './checkpoint/convert.ts';
import type { Checkpoint, ReadProgress, ReadTensorsOptions } from './checkpoint/reader.ts';

/**
 * What loading needs of a checkpoint (a Checkpoint, or anything shaped like it). A source whose
 * tensors may be stored quantized (GGUF) says which, and hands those over as their blocks.
 */
export type TensorSource = Pick<Checkpoint, 'config' | 'generationConfig' | 'tensorInfo' | 'readFloat32'> & {
  isQuantized?(name: string): boolean;
  /** Bytes a quantized tensor is stored in; undefined for a float one or an unknown name. */
  quantizedBytes?(name: string): number | undefined;
  readQuantized?(names: Iterable<string>, options?: ReadTensorsOptions): Promise<Map<string, GgmlBlocks>>;
};

/** A tensor as read: f32 values, or a quantized matrix kept in its blocks. */
export type LoadedValue = Float32Array | GgmlBlocks;

/** Tensor name -> the shape the architecture expects. */
export type ExpectedShapes = Map<string, readonly number[]>;

export interface LoadProgress {
  bytesDone: number;
  bytesTotal: number;
  /** The weight file the latest bytes came from. */
  file: string;
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** Checks dtypes and shapes of every expected tensor; returns their byte sizes. */
export async function checkTensors(source: TensorSource, expected: ExpectedShapes, signal?: AbortSignal): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for (const info of await source.tensorInfo(expected.keys(), signal)) {
    assertFloatDtype(info.name, info.dtype);
    const want = expected.get(info.name)!;
    if (info.shape.length !== want.length || info.shape.some((d, i) => d !== want[i])) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `tensor ${info.name} has shape ${fmt(info.shape)}, the config implies ${fmt(want)}`);
    }
    sizes.set(info.name, info.byteLength);
  }
  return sizes;
}

export interface ReadOptions {
  signal?: AbortSignal;
  onProgress?: (progress: ReadProgress) => void;
}

/**
 * The values of already checked tensors, quantized matrices as their blocks; a NaN or infinity (a
 * value, or a block's scale) is ERR_CHECKPOINT_CORRUPT naming the tensor.
 */
export async function readValues(source: TensorSource, names: Iterable<string>, options: ReadOptions = {}): Promise<Map<string, LoadedValue>> {
  const all = [...new Set(names)];
  const quantized = source.readQuantized && source.isQuantized ? all.filter((n) => source.isQuantized!(n)) : [];
  const out = new Map<string, LoadedValue>();
  // Progress runs on over both reads: the quantized bytes first, then the floats after them.
  let before = 0;
  const report = options.onProgress;
  if (quantized.length) {
    const onProgress = report && ((p: ReadProgress) => report({ ...p, bytesDone: (before = p.bytesDone) }));
    for (const [name, blocks] of await source.readQuantized!(quantized, { ...options, onProgress })) {
      checkScales(name, blocks);
      out.set(name, blocks);
    }
  }
  const onProgress = report && ((p: ReadProgress) => report({ ...p, bytesDone: before + p.bytesDone, bytesTotal: before + p.bytesTotal }));
  const tensors = await source.readFloat32(all.filter((n) => !out.has(n)), { ...options, onProgress });
  for (const [name, t] of tensors) {
    const data = t.data;
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) {
        throw new AigridError('ERR_CHECKPOINT_CORRUPT', `tensor ${name} holds a non-finite value (${data[i]}) at element ${i}`);
      }
    }
    out.set(name, data);
  }
  return out;
}

/** Sums progress over several reads into one running total. */
export class ProgressTotal {
  private done = 0;

  constructor(readonly bytesTotal: number, private readonly report?: (progress: LoadProgress) => void) {}

  /** A per-read callback whose bytes add onto the total. */
  forRead(): (progress: ReadProgress) => void {
    let seen = 0;
    return (p) => {
      this.done += p.bytesDone - seen;
      seen = p.bytesDone;
      this.report?.({ bytesDone: this.done, bytesTotal: this.bytesTotal, file: p.file });
    };
  }
}

/** Every f16 scale of every block must be finite (the quants themselves are small integers). */
function checkScales(name: string, m: GgmlBlocks): void {
  const { bytes } = m;
  // Where each block keeps its f16 scales: [block bytes, offsets of its halves].
  const layout: Record<number, [number, number[]]> = { 8: [34, [0]], 2: [18, [0]], 6: [22, [0]], 12: [144, [0, 2]], 14: [210, [208]] };
  const [size, offsets] = layout[m.type] ?? [0, []];
  for (let at = 0; size && at < bytes.byteLength; at += size) {
    for (const o of offsets) {
      if (!Number.isFinite(f16ToF32(bytes[at + o]! | (bytes[at + o + 1]! << 8)))) {
        throw new AigridError('ERR_CHECKPOINT_CORRUPT', `tensor ${name} (${ggmlTypeName(m.type)}) has a non-finite scale in block ${at / size}`);
      }
    }
  }
}

/** A value from the tensors read, which the caller asked for, as f32 (a quantized one decoded). */
export function take(tensors: Map<string, LoadedValue>, name: string): Float32Array {
  const data = takeLinear(tensors, name);
  return data instanceof Float32Array ? data : dequantizeGgml(data.type, data.bytes, data.rows * data.cols);
}

/** A linear weight's values as read: f32, or its quantized blocks. */
export function takeLinear(tensors: Map<string, LoadedValue>, name: string): LoadedValue {
  const data = tensors.get(name);
  if (!data) throw new AigridError('ERR_TENSOR_MISSING', `tensor ${name} was not read`);
  return data;
}

/** [rows, cols] row-major -> [cols, rows] (GPT-2's Conv1D stores [in, out]; linear wants [out, in]). */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  }
  return out;
}
