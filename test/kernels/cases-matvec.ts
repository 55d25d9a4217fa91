// The matrix-vector kernel (decode): every weight dtype on seeded shapes, both the vector-load
// snippets and the any-K fallback, a few rows of x, the native f16 path where the adapter has it,
// both kernels (GPU reduction, CPU whole rows) whichever the adapter would pick, and the reduction's
// two row loops (wide units where K allows, groups of four otherwise).
import { linearRef } from '../../kernels/cpu/matmul.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { MatvecOp, type MatvecKernel } from '../../kernels/matvec.ts';
import { storedWeights, type ScaleDtype } from '../../kernels/quant.ts';
import { partBytes, uploadWeight, type FloatWeightDtype as WeightDtype } from '../../kernels/weights.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type CaseOutcome, type KernelCase } from './check.ts';
import { checkShapes, freeWeight } from './cases-matmul.ts';

// [M, K, N]: K = 1 and 37 take the any-K fallback (f32, f16, q8); N = 300 spans
// several workgroups; M > 1 runs one row of x per workgroup layer.
const SHAPES: [number, number, number][] = [[1, 1, 1], [1, 32, 17], [1, 96, 33], [1, 1000, 300], [2, 64, 7], [3, 200, 70], [1, 37, 20], [1, 4096, 3]];
const Q4_SHAPES: [number, number, number][] = [[1, 32, 1], [1, 32, 17], [1, 96, 33], [1, 256, 300], [2, 64, 7], [3, 128, 70], [1, 4096, 3]];

// Rows past a multiple of four (the CPU kernel's rows per thread), K % 8 == 4, a few rows of x.
const KERNEL_SHAPES: [number, number, number][] = [[1, 4, 1], [1, 12, 6], [2, 20, 9], [1, 200, 70], [3, 64, 35]];
const KERNEL_Q4_SHAPES: [number, number, number][] = [[1, 32, 1], [1, 64, 6], [2, 96, 9], [3, 256, 35]];

// The reduce kernel's wide loop (K a multiple of the unit: f16 8, q8 16, q4 32) and, for f16 and
// q8, the vec4 loop beside it (K % 4 == 0 only; q4's K is always whole blocks). 37 units leave a tail after the four-unit
// iterations; 4096 gives whole warps per row; one unit is a row of one load.
const WIDE_SHAPES: Record<'f16' | 'q8' | 'q4', { wide: [number, number, number][]; vec4: [number, number, number][] }> = {
  f16: { wide: [[1, 8, 1], [2, 40, 9], [3, 296, 35], [1, 4096, 5]], vec4: [[1, 12, 6], [2, 36, 9], [1, 300, 13]] },
  q8: { wide: [[1, 16, 1], [2, 48, 9], [3, 592, 35], [1, 4096, 5]], vec4: [[1, 20, 6], [2, 40, 9], [1, 600, 13]] },
  q4: { wide: [[1, 32, 1], [2, 96, 9], [3, 1184, 35], [1, 4096, 5]], vec4: [] },
};

/**
 * One MatvecOp kernel on a weight split into parts of `rows` rows, each part writing its own
 * columns, against the f64 reference on the weights as stored (subgroups false: the shared-memory
 * reduction even where the adapter has subgroups).
 */
async function checkKernel(ctx: GpuContext, kernel: MatvecKernel, dtype: WeightDtype, shape: [number, number, number], rows: number, scaleDtype?: ScaleDtype, subgroups?: boolean): Promise<CaseOutcome> {
  const [M, K, N] = shape;
  const x = randomFloats(7 * K + M, M * K);
  const w = randomFloats(7 * K + N + 1000, N * K);
  const op = new MatvecOp(ctx, { f16: ctx.f16 ? 'auto' : 'packed', kernel, subgroups });
  const weight = uploadWeight(ctx, w, [N, K], dtype, { scaleDtype, maxBindingBytes: partBytes(dtype, rows, K, scaleDtype) });
  const xt = ctx.tensor([M, K], 'f32', x, 'x');
  const out = ctx.tensor([M, N], 'f32', undefined, 'out');
  submit(ctx, (e) => weight.parts.forEach((part) => op.run(e, xt, part.tensor, out, part.rowStart)));
  const got = (await ctx.read(out)) as Float32Array;
  freeWeight(weight);
  xt.buffer.destroy();
  out.buffer.destroy();
  const { atol, rtol } = TOL[dtype];
  const outcome = allclose(got, linearRef(x, M, K, storedWeights(w, N, K, dtype, scaleDtype), N), atol, rtol);
  return { ok: outcome.ok, detail: `${kernel}${subgroups === false ? ' (no subgroups)' : ''} ${dtype}${scaleDtype ? `/${scaleDtype}` : ''} [${shape.join(', ')}] ${weight.parts.length} parts: ${outcome.detail}` };
}

export const CASES: KernelCase[] = [
  ...(['f32', 'f16', 'q8', 'q4'] as const).map(
    (dtype): KernelCase => ({
      name: `matvec: ${dtype} weights on seeded shapes`,
      run: (ctx) => checkShapes(ctx, { kernel: 'matvec', dtype }, dtype === 'q4' ? Q4_SHAPES : SHAPES),
    }),
  ),
  {
    name: 'matvec: q8 and q4 with f16 scales',
    async run(ctx) {
      return all([
        await checkShapes(ctx, { kernel: 'matvec', dtype: 'q8', scaleDtype: 'f16' }, [[1, 64, 33], [1, 200, 9]]),
        await checkShapes(ctx, { kernel: 'matvec', dtype: 'q4', scaleDtype: 'f16' }, [[1, 96, 33], [2, 256, 9]]),
      ]);
    },
  },
  {
    name: 'matvec: native f16 path (shader-f16 adapters; ERR_GPU_FEATURE elsewhere)',
    async run(ctx) {
      if (!ctx.f16) return expectCode('ERR_GPU_FEATURE', () => new MatvecOp(ctx, { f16: 'native' }));
      return checkShapes(ctx, { kernel: 'matvec', dtype: 'f16', f16: 'native' }, SHAPES);
    },
  },
  {
    name: 'matvec: linear layer at M = 1 (decode) on every dtype',
    async run(ctx) {
      const outcomes = [];
      for (const dtype of ['f32', 'f16', 'q8', 'q4'] as const) {
        outcomes.push(await checkShapes(ctx, { kernel: 'linear', dtype, f16: ctx.f16 ? 'auto' : 'packed' }, [[1, 128, 50], [1, 64, 1]]));
      }
      return all(outcomes);
    },
  },
  {
    name: 'matvec: reduce kernel, the wide loop and the vec4 loop beside it (split weights, f16 scales, with and without subgroups)',
    async run(ctx) {
      const outcomes = [];
      for (const dtype of ['f16', 'q8', 'q4'] as const) {
        const { wide, vec4 } = WIDE_SHAPES[dtype];
        for (const shape of [...wide, ...vec4]) {
          outcomes.push(await checkKernel(ctx, 'reduce', dtype, shape, shape[2]));
          outcomes.push(await checkKernel(ctx, 'reduce', dtype, shape, 4));
          if (dtype !== 'f16') outcomes.push(await checkKernel(ctx, 'reduce', dtype, shape, 7, 'f16'));
          // Where the adapter has subgroups the wide loop's rows reduce with them: the tree too.
          if (ctx.subgroups) outcomes.push(await checkKernel(ctx, 'reduce', dtype, shape, 4, undefined, false));
        }
      }
      return all(outcomes);
    },
  },
  ...(['reduce', 'rows'] as const).map(
    (kernel): KernelCase => ({
      name: `matvec: the ${kernel} kernel on every dtype, odd row counts, split weights`,
      async run(ctx) {
        const outcomes = [];
        for (const dtype of ['f32', 'f16', 'q8', 'q4'] as const) {
          for (const shape of dtype === 'q4' ? KERNEL_Q4_SHAPES : KERNEL_SHAPES) {
            outcomes.push(await checkKernel(ctx, kernel, dtype, shape, shape[2]));
            outcomes.push(await checkKernel(ctx, kernel, dtype, shape, 7));
          }
        }
        outcomes.push(await checkKernel(ctx, kernel, 'q8', [1, 64, 33], 33, 'f16'));
        outcomes.push(await checkKernel(ctx, kernel, 'q4', [2, 128, 21], 7, 'f16'));
        return all(outcomes);
      },
    }),
  ),
];
