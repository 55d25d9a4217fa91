// How the CPU backend keeps GGML-quantized weights for its SIMD kernels (ggml-wasm.ts): the file's
// blocks, repacked one for one, losslessly, into blocks the kernels decode with fewer operations.
// Rows stay whole and consecutive, so a thread streams its range of rows as one run of memory. They
// are not interleaved in pairs as cpu-linear.ts does for f32: there a pair shares each load of x,
// here the kernels are bound by decoding (a shuffle and a convert per four weights), which pairing
// does not reduce.
//
// Repacked blocks (every field can be turned back into the file's bytes exactly):
// - Q8_0 (36 bytes): f32 d, 32 int8 q.
// - Q4_0 (20 bytes): f32 d, 16 bytes of nibbles XOR 0x88, so each nibble reads as q - 8 in 4-bit
//   two's complement and needs no subtraction.
// - Q5_0 (24 bytes): f32 d, the 4 bytes of qh, the 16 bytes of nibbles, as in the file. qh leads so
//   that one 16-byte load from it stays inside the block.
// - Q4_K (152 bytes): f32 d, f32 dmin, the 8 six-bit scales and the 8 mins as bytes, 128 bytes of
//   nibbles as in the file.
// - Q6_K (212 bytes): f32 d, 16 int8 scales, 128 bytes ql, 64 bytes qh, as in the file.
// The scales are f32 because WebAssembly has no f16 conversion: decoding one bit by bit would add
// about ten scalar operations to every block; the 6-bit Q4_K scales are bytes for the same reason. That makes
// blocks 1 to 11% larger than the file's (Q6_K 1%, Q8_0 6%, Q4_K 6%, Q5_0 9%, Q4_0 11%).
import { GGML_TYPE, q4kScaleMin, type GgmlType } from '../../../kernels/ggml-quants.ts';
import { f16ToF32 } from '../../../kernels/quant.ts';
import type { KernelFormat } from './ggml-wasm.ts';

export interface GgmlLayout {
  readonly type: GgmlType;
  /** Weights per block. */
  readonly blockElements: number;
  /** Bytes of a block in the file, and repacked. */
  readonly fileBlockBytes: number;
  readonly blockBytes: number;
  /** Writes one repacked block at `dst[to]` from the file's block at `src[from]`. */
  readonly repack: (src: Uint8Array, from: number, dst: Uint8Array, dstView: DataView, to: number) => void;
}

const f16At = (src: Uint8Array, at: number) => f16ToF32(src[at]! | (src[at + 1]! << 8));

export const LAYOUTS: Record<KernelFormat, GgmlLayout> = {
  q8_0: {
    type: GGML_TYPE.Q8_0, blockElements: 32, fileBlockBytes: 34, blockBytes: 36,
    repack(src, from, dst, view, to) {
      view.setFloat32(to, f16At(src, from), true);
      dst.set(src.subarray(from + 2, from + 34), to + 4);
    },
  },
  q4_0: {
    type: GGML_TYPE.Q4_0, blockElements: 32, fileBlockBytes: 18, blockBytes: 20,
    repack(src, from, dst, view, to) {
      view.setFloat32(to, f16At(src, from), true);
      for (let j = 0; j < 16; j++) dst[to + 4 + j] = src[from + 2 + j]! ^ 0x88;
    },
  },
  q5_0: {
    type: GGML_TYPE.Q5_0, blockElements: 32, fileBlockBytes: 22, blockBytes: 24,
    repack(src, from, dst, view, to) {
      view.setFloat32(to, f16At(src, from), true);
      dst.set(src.subarray(from + 2, from + 22), to + 4);
    },
  },
  q4_k: {
    type: GGML_TYPE.Q4_K, blockElements: 256, fileBlockBytes: 144, blockBytes: 152,
    repack(src, from, dst, view, to) {
      view.setFloat32(to, f16At(src, from), true);
      view.setFloat32(to + 4, f16At(src, from + 2), true);
      for (let s = 0; s < 8; s++) {
        const [scale, min] = q4kScaleMin(src, from + 4, s);
        dst[to + 8 + s] = scale;
        dst[to + 16 + s] = min;
      }
      dst.set(src.subarray(from + 16, from + 144), to + 24);
    },
  },
  q6_k: {
    type: GGML_TYPE.Q6_K, blockElements: 256, fileBlockBytes: 210, blockBytes: 212,
    repack(src, from, dst, view, to) {
      view.setFloat32(to, f16At(src, from + 208), true);
      dst.set(src.subarray(from + 192, from + 208), to + 4);
      dst.set(src.subarray(from, from + 192), to + 20);
    },
  },
};

const FORMAT_OF = new Map<number, KernelFormat>(Object.entries(LAYOUTS).map(([format, l]) => [l.type, format as KernelFormat]));

/** The kernel format of a GGML type, or undefined when there is no kernel for it. */
export function kernelFormatOf(type: number): KernelFormat | undefined {
  return FORMAT_OF.get(type);
}

/** Repacks `blocks` file blocks from `src` into `dst` (a view of the shared memory, exactly sized). */
export function repackBlocks(layout: GgmlLayout, src: Uint8Array, blocks: number, dst: Uint8Array): void {
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let b = 0; b < blocks; b++) layout.repack(src, b * layout.fileBlockBytes, dst, view, b * layout.blockBytes);
}
