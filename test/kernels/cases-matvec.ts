// The matrix-vector kernel (decode): every weight dtype on seeded shapes, both the vector-load
// snippets and the any-K fallback, a few rows of x, and the native f16 path where the adapter has it.
import { MatvecOp } from '../../kernels/matvec.ts';
import { all, expectCode, type KernelCase } from './check.ts';
import { checkShapes } from './cases-matmul.ts';

// [M, K, N]: K = 1 and 37 take the any-K fallback (f32, f16, q8); N = 300 spans
// several workgroups; M > 1 runs one row of x per workgroup layer.
const SHAPES: [number, number, number][] = [[1, 1, 1], [1, 32, 17], [1, 96, 33], [1, 1000, 300], [2, 64, 7], [3, 200, 70], [1, 37, 20], [1, 4096, 3]];
const Q4_SHAPES: [number, number, number][] = [[1, 32, 1], [1, 32, 17], [1, 96, 33], [1, 256, 300], [2, 64, 7], [3, 128, 70], [1, 4096, 3]];

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
];
