import { layerNormRef, rmsNormRef } from '../../kernels/cpu/norm.ts';
import { LayerNormOp } from '../../kernels/layernorm.ts';
import { RmsNormOp } from '../../kernels/rmsnorm.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type KernelCase } from './check.ts';

// Rows x H: 1 row, H = 1, H not a multiple of the workgroup, H = 4096 and 8192, a 3-D [T, heads, d].
const shapes: number[][] = [[1, 1], [1, 7], [5, 300], [37, 257], [3, 4096], [2, 8192], [2, 3, 64]];

const cases: KernelCase[] = [
  {
    name: 'rmsnorm: seeded shapes up to H = 8192',
    async run(ctx) {
      const op = new RmsNormOp(ctx);
      const outcomes = [];
      for (const [i, shape] of shapes.entries()) {
        const cols = shape[shape.length - 1]!;
        const x = randomFloats(200 + i, shape.reduce((a, b) => a * b), -3, 3);
        const w = randomFloats(210 + i, cols, 0.5, 1.5);
        const eps = i % 2 ? 1e-6 : 1e-5;
        const out = ctx.tensor(shape, 'f32');
        submit(ctx, (e) => op.run(e, ctx.tensor(shape, 'f32', x), ctx.tensor([cols], 'f32', w), out, eps));
        outcomes.push(allclose(await ctx.read(out), rmsNormRef(x, w, eps), TOL.f32.atol, TOL.f32.rtol));
      }
      return all(outcomes);
    },
  },
  {
    name: 'layernorm: seeded shapes up to H = 8192, rows far from zero mean',
    async run(ctx) {
      const op = new LayerNormOp(ctx);
      const outcomes = [];
      for (const [i, shape] of shapes.entries()) {
        const cols = shape[shape.length - 1]!;
        // An offset of 50 would cancel most of the variance in a one-pass E[x^2] - E[x]^2.
        const x = randomFloats(220 + i, shape.reduce((a, b) => a * b), i % 2 ? 49 : -1, i % 2 ? 51 : 1);
        const gamma = randomFloats(230 + i, cols, 0.5, 1.5);
        const beta = randomFloats(240 + i, cols);
        const out = ctx.tensor(shape, 'f32');
        submit(ctx, (e) => op.run(e, ctx.tensor(shape, 'f32', x), ctx.tensor([cols], 'f32', gamma), ctx.tensor([cols], 'f32', beta), out, 1e-5));
        outcomes.push(allclose(await ctx.read(out), layerNormRef(x, gamma, beta, 1e-5), TOL.f32.atol, TOL.f32.rtol));
      }
      return all(outcomes);
    },
  },
  {
    name: 'norms: wrong shapes, dtypes and eps are named errors',
    async run(ctx) {
      const rms = new RmsNormOp(ctx);
      const ln = new LayerNormOp(ctx);
      const x = ctx.tensor([4, 8], 'f32');
      const w = ctx.tensor([8], 'f32');
      const out = ctx.tensor([4, 8], 'f32');
      return all([
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => rms.run(e, x, ctx.tensor([7], 'f32'), out, 1e-5))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => rms.run(e, x, w, ctx.tensor([8, 4], 'f32'), 1e-5))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => rms.run(e, ctx.tensor([4, 8], 'f16'), w, out, 1e-5))),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => rms.run(e, x, w, out, Number.NaN))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => ln.run(e, x, w, ctx.tensor([9], 'f32'), out, 1e-5))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => ln.run(e, x, ctx.tensor([8], 'u32'), w, out, 1e-5))),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => ln.run(e, x, w, w, out, -1))),
      ]);
    },
  },
];

// In a GPU error scope: an invalid shader or binding fails the case instead of reading zeros.
export const CASES: KernelCase[] = cases.map((c) => ({ name: c.name, run: (ctx) => ctx.scoped(() => c.run(ctx)) }));
