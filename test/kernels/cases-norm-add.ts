// RMSNorm with the residual add after it in one pass (RmsNormOp.runAdd: Gemma 2's norms after
// attention and the MLP) against the CPU norm and add, and bit for bit against the two passes.
import { addRef } from '../../kernels/cpu/add.ts';
import { rmsNormRef } from '../../kernels/cpu/norm.ts';
import { AddOp } from '../../kernels/add.ts';
import { RmsNormOp } from '../../kernels/rmsnorm.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type KernelCase } from './check.ts';

export const CASES: KernelCase[] = [
  {
    name: 'rmsnorm + add: seeded shapes against the reference and the separate passes',
    async run(ctx) {
      const op = new RmsNormOp(ctx);
      const add = new AddOp(ctx);
      const outcomes = [];
      for (const [i, [rows, cols]] of ([[1, 1], [1, 576], [3, 70], [5, 2048]] as const).entries()) {
        const x = randomFloats(40 + i, rows * cols, -4, 4);
        const w = randomFloats(50 + i, cols, 0.5, 1.5);
        const r = randomFloats(60 + i, rows * cols);
        const [tx, tw, tr] = [ctx.tensor([rows, cols], 'f32', x), ctx.tensor([cols], 'f32', w), ctx.tensor([rows, cols], 'f32', r)];
        const [fused, normed, twoPass] = [ctx.tensor([rows, cols], 'f32'), ctx.tensor([rows, cols], 'f32'), ctx.tensor([rows, cols], 'f32')];
        submit(ctx, (e) => {
          op.runAdd(e, tx, tw, tr, fused, 1e-6);
          op.run(e, tx, tw, normed, 1e-6);
          add.run(e, tr, normed, twoPass);
        });
        const got = (await ctx.read(fused)) as Float32Array;
        const two = (await ctx.read(twoPass)) as Float32Array;
        outcomes.push(allclose(got, addRef(r, rmsNormRef(x, w, 1e-6)), TOL.f32.atol, TOL.f32.rtol));
        const same = got.every((v, j) => Object.is(v, two[j]));
        outcomes.push({ ok: same, detail: same ? `[${rows}, ${cols}] bit for bit with norm then add` : `[${rows}, ${cols}] differs from norm then add` });
        for (const t of [tx, tw, tr, fused, normed, twoPass]) t.buffer.destroy();
      }
      return all(outcomes);
    },
  },
  {
    name: 'rmsnorm + add: a misshapen residual and out aliasing x are named errors',
    async run(ctx) {
      const op = new RmsNormOp(ctx);
      const x = ctx.tensor([2, 8], 'f32');
      const w = ctx.tensor([8], 'f32');
      return all([
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.runAdd(e, x, w, ctx.tensor([2, 7], 'f32'), ctx.tensor([2, 8], 'f32'), 1e-6))),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.runAdd(e, x, w, ctx.tensor([2, 8], 'f32'), x, 1e-6))),
      ]);
    },
  },
];
