import { AddOp } from '../../kernels/add.ts';
import { addRef } from '../../kernels/cpu/add.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type KernelCase } from './check.ts';

const shapes: [number, number][] = [[1, 1], [1, 7], [3, 5], [17, 300], [64, 256], [2, 70_001]];

export const CASES: KernelCase[] = [
  {
    name: 'add: residual and bias on seeded shapes (incl. 1 row, odd sizes)',
    async run(ctx) {
      const op = new AddOp(ctx);
      const outcomes = [];
      for (const [i, [rows, cols]] of shapes.entries()) {
        const a = randomFloats(10 + i, rows * cols);
        const r = randomFloats(20 + i, rows * cols);
        const bias = randomFloats(30 + i, cols);
        const ta = ctx.tensor([rows, cols], 'f32', a);
        const tr = ctx.tensor([rows, cols], 'f32', r);
        const tb = ctx.tensor([cols], 'f32', bias);
        const out1 = ctx.tensor([rows, cols], 'f32');
        const out2 = ctx.tensor([rows, cols], 'f32');
        submit(ctx, (e) => {
          op.run(e, ta, tr, out1);
          op.run(e, ta, tb, out2);
        });
        outcomes.push(allclose(await ctx.read(out1), addRef(a, r), TOL.f32.atol, TOL.f32.rtol));
        outcomes.push(allclose(await ctx.read(out2), addRef(a, bias), TOL.f32.atol, TOL.f32.rtol));
      }
      return all(outcomes);
    },
  },
  {
    name: 'add: wrong shapes and dtypes are named errors',
    async run(ctx) {
      const op = new AddOp(ctx);
      const a = ctx.tensor([4, 8], 'f32');
      return all([
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, a, ctx.tensor([4, 7], 'f32'), a))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, a, a, ctx.tensor([8, 4], 'f32')))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, a, ctx.tensor([4, 8], 'u32'), a))),
      ]);
    },
  },
];
