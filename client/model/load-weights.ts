// Reads a set of checkpoint tensors after checking their dtypes and shapes from the headers alone,
// so a wrong checkpoint fails before its bytes are downloaded, and refuses non-finite values so a
// damaged file can never put NaN into the activations.
import { AigridError } from '../../protocol/index.ts';
import { assertFloatDtype } from './checkpoint/convert.ts';
import type { Checkpoint, ReadProgress } from './checkpoint/reader.ts';

/** What loading needs of a checkpoint (a Checkpoint, or anything shaped like it). */
export type TensorSource = Pick<Checkpoint, 'config' | 'generationConfig' | 'tensorInfo' | 'readFloat32'>;

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

/** The values of already checked tensors; a NaN or infinity is ERR_CHECKPOINT_CORRUPT naming the tensor. */
export async function readValues(source: TensorSource, names: Iterable<string>, options: ReadOptions = {}): Promise<Map<string, Float32Array>> {
  const tensors = await source.readFloat32(names, options);
  const out = new Map<string, Float32Array>();
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

/** A value from the tensors read, which the caller asked for. */
export function take(tensors: Map<string, Float32Array>, name: string): Float32Array {
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
