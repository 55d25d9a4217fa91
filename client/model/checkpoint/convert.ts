// Raw checkpoint bytes to Float32Array. Exact for every input: bf16 is the top half of an f32, and
// every f16 (subnormals, infinities, NaN included) has an f32 of the same value. Hosts are
// little-endian (every platform with WebGPU is), as safetensors data is.
import { AigridError } from '../../../protocol/errors.ts';
import { DTYPE_BYTES, type SafetensorsDtype } from './safetensors.ts';
import { f16ToF32 } from '../../../kernels/quant.ts';

export interface LoadedTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Little-endian data as stored in the checkpoint. */
  bytes: Uint8Array;
}

export const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16'];
/** GGUF's quantized types, which its reader dequantizes. */
const GGUF_QUANTIZED: readonly string[] = ['Q8_0', 'Q4_0', 'Q5_0', 'Q4_K', 'Q6_K'];

/** ERR_DTYPE_UNSUPPORTED, naming the tensor, unless the dtype converts to f32. */
export function assertFloatDtype(name: string, dtype: string): void {
  if (!(FLOAT_DTYPES as readonly string[]).includes(dtype) && !GGUF_QUANTIZED.includes(dtype)) {
    throw new AigridError('ERR_DTYPE_UNSUPPORTED', `tensor ${name} is ${dtype}; as floats only ${FLOAT_DTYPES.join(', ')} (and GGUF's ${GGUF_QUANTIZED.join(', ')}) can be read`);
  }
}

/** The value of one IEEE 754 half given as its 16 bits (the kernels' conversion, one definition). */
export const f16ToNumber = f16ToF32;

let f16Table: Float32Array | undefined;

/** Halves to floats through a 256 KiB table built on first use (much faster than per-element math). */
export function f16BitsToFloat32(bits: Uint16Array): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToNumber(i);
  }
  const table = f16Table;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}

/** bfloat16 to float: the 16 bits become the top half of the f32, bit for bit. */
export function bf16BitsToFloat32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16;
  return new Float32Array(out.buffer);
}

/** The tensor's values as a new Float32Array; F32, F16 and BF16 only. */
export function toFloat32(tensor: LoadedTensor): Float32Array {
  const { name, dtype, shape, bytes } = tensor;
  assertFloatDtype(name, dtype);
  const elements = shape.reduce((a, b) => a * b, 1);
  if (bytes.byteLength !== elements * DTYPE_BYTES[dtype]) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `tensor ${name}: ${bytes.byteLength} bytes for [${shape.join(', ')}] ${dtype}`);
  }
  if (dtype === 'F32') return new Float32Array(bytes.slice().buffer);
  // Typed views need aligned offsets; tensors inside a merged download often are not.
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  const bits = new Uint16Array(aligned.buffer, aligned.byteOffset, elements);
  return dtype === 'F16' ? f16BitsToFloat32(bits) : bf16BitsToFloat32(bits);
}
