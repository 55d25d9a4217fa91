// The WebAssembly SIMD module of the CPU backend's linear over GGML-quantized weights (run by
// ggml-linear.ts), its bytes written out here with no toolchain (ggml-wasm-asm.ts).
//
// Weights stay quantized in memory, in the repacked blocks of ggml-layout.ts; each block is
// dequantized in registers (ggml-wasm-formats.ts): bytes to integers, integers to f32x4, products
// with f32 x in f32x4, sums in f32, in the order kernels/cpu/ggml-linear.ts defines (so results are
// ggmlLinearRef's bits): per scale group a four-lane partial, then acc += partial * scale, then
// (acc0 + acc1) + (acc2 + acc3). Nothing depends on how many rows of x share a pass.
//
// Per format, kernels `k_{format}_{MB}` for MB = 1..4 rows of x (ggml-wasm-kernel.ts), and a driver
// `run_{format}(x, xs, w, out, N, blocks, n0, n1, M, tile)` that walks weight rows [n0, n1) in
// tiles of `tile` rows and, per tile, all M rows of x in blocks of four: a batch reads each weight
// from memory once, and a thread runs the driver on its range of rows.
import { FunctionBody, OP, moduleBytes, type ModuleFunction } from './ggml-wasm-asm.ts';
import { FORMAT_KERNELS } from './ggml-wasm-formats.ts';
import { KERNEL_PARAMS } from './ggml-wasm-kernel.ts';
import { LAYOUTS, type GgmlLayout } from './ggml-layout.ts';

/** The formats the module has kernels for, in export order. */
export const KERNEL_FORMATS = ['q8_0', 'q4_0', 'q5_0', 'q4_k', 'q6_k'] as const;
export type KernelFormat = (typeof KERNEL_FORMATS)[number];

export const runName = (format: KernelFormat) => `run_${format}`;

/** Bytes of Q4_K group sums per block of one x row: eight groups, four f32 lanes each. */
const Q4K_SUM_BYTES = 8 * 16;

/** Bytes of Q4_K group sums one row of x needs. */
export const xsumBytesPerRow = (K: number) => (K / 32) * 16;

/** The driver: tiles of weight rows [n0, n1), and per tile every block of up to four x rows. */
function runBody(layout: GgmlLayout, xsBytesPerBlock: number, firstKernel: number): FunctionBody {
  const f = new FunctionBody(10);
  const X = 0, XS = 1, W = 2, OUT = 3, N = 4, BLOCKS = 5, N0 = 6, N1 = 7, M = 8, TILE = 9;
  const t = f.i32(), rows = f.i32(), m0 = f.i32(), mb = f.i32();
  f.get(N0).set(t);
  f.op(OP.block, 0x40, OP.loop, 0x40);
  {
    f.get(t).get(N1).op(OP.i32GeU, OP.brIf, 1);
    // rows = min(tile, n1 - t)
    f.get(TILE).get(N1).get(t).op(OP.i32Sub).get(TILE).get(N1).get(t).op(OP.i32Sub, OP.i32LtU, OP.i32Select).set(rows);
    f.i32Const(0).set(m0);
    f.op(OP.loop, 0x40);
    {
      // mb = min(4, M - m0)
      f.i32Const(4).get(M).get(m0).op(OP.i32Sub).get(M).get(m0).op(OP.i32Sub).i32Const(4).op(OP.i32GtU, OP.i32Select).set(mb);
      const call = (kernel: number) => {
        f.get(X).get(m0).get(BLOCKS).op(OP.i32Mul).i32Const(layout.blockElements * 4).op(OP.i32Mul, OP.i32Add);
        f.get(XS).get(m0).get(BLOCKS).op(OP.i32Mul).i32Const(xsBytesPerBlock).op(OP.i32Mul, OP.i32Add);
        f.get(W).get(t).get(BLOCKS).op(OP.i32Mul).i32Const(layout.blockBytes).op(OP.i32Mul, OP.i32Add);
        f.get(OUT).get(m0).get(N).op(OP.i32Mul).get(t).op(OP.i32Add).i32Const(4).op(OP.i32Mul, OP.i32Add);
        f.get(N).get(BLOCKS).get(rows).call(kernel);
      };
      for (let k = 1; k < 4; k++) {
        f.get(mb).i32Const(k).op(OP.i32Eq, OP.if, 0x40);
        call(firstKernel + k - 1);
        f.op(OP.else);
      }
      call(firstKernel + 3);
      f.op(OP.end, OP.end, OP.end);
      f.get(m0).i32Const(4).op(OP.i32Add).tee(m0).get(M).op(OP.i32LtU, OP.brIf, 0);
    }
    f.op(OP.end);
    f.get(t).get(TILE).op(OP.i32Add).set(t);
    f.op(OP.br, 0);
  }
  f.op(OP.end, OP.end);
  return f;
}

/** The module: imports `env.memory` (shared, at most `maxPages`); per format, its kernels then its driver. */
export function ggmlModuleBytes(maxPages: number): Uint8Array<ArrayBuffer> {
  const functions: ModuleFunction[] = [];
  for (const format of KERNEL_FORMATS) {
    const first = functions.length;
    for (let MB = 1; MB <= 4; MB++) functions.push({ name: `k_${format}_${MB}`, params: KERNEL_PARAMS, body: FORMAT_KERNELS[format](MB) });
    const xsBytes = format === 'q4_k' ? Q4K_SUM_BYTES : 0;
    functions.push({ name: runName(format), params: 10, body: runBody(LAYOUTS[format], xsBytes, first) });
  }
  return moduleBytes(functions, maxPages);
}
