import { addWeightedRef, routeRef } from '../../kernels/cpu/moe.ts';
import { MoeOp } from '../../kernels/moe.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type KernelCase } from './check.ts';

export const CASES: KernelCase[] = [
  {
    name: 'moe: routing weights (softmax, top k, renormalized or not) and the weighted sum of experts',
    async run(ctx) {
      const op = new MoeOp(ctx);
      const outcomes = [];
      for (const [i, [rows, experts, k, normalize]] of ([[1, 8, 2, true], [37, 8, 2, false], [5, 64, 8, true], [3, 4, 4, true], [2, 128, 1, false]] as const).entries()) {
        const logits = randomFloats(700 + i, rows * experts, -4, 4);
        const out = ctx.tensor([rows, experts], 'f32');
        submit(ctx, (e) => op.runRoute(e, ctx.tensor([rows, experts], 'f32', logits), out, k, normalize));
        const got = await ctx.read(out);
        const want = routeRef(logits, experts, k, normalize);
        outcomes.push(allclose(got, want, TOL.f32.atol, TOL.f32.rtol));
        // Exactly k experts per row, the same ones.
        const chosen = (w: Float32Array) => Array.from(w, (v) => (v > 0 ? 1 : 0)).join('');
        outcomes.push({ ok: chosen(got as Float32Array) === chosen(want), detail: `top-${k} of ${experts}: same experts chosen` });
        const width = 48;
        const acc = randomFloats(710 + i, rows * width);
        const y = randomFloats(720 + i, rows * width);
        const sum = ctx.tensor([rows, width], 'f32');
        const expert = experts - 1;
        submit(ctx, (e) => op.runAddWeighted(e, ctx.tensor([rows, width], 'f32', acc), ctx.tensor([rows, width], 'f32', y), ctx.tensor([rows, experts], 'f32', want), expert, sum));
        outcomes.push(allclose(await ctx.read(sum), addWeightedRef(acc, y, want, experts, expert), TOL.f32.atol, TOL.f32.rtol));
      }
      return all(outcomes);
    },
  },
  {
    name: 'moe: too many experts, a bad k or expert, and wrong shapes are named errors',
    async run(ctx) {
      const op = new MoeOp(ctx);
      const logits = ctx.tensor([2, 8], 'f32');
      return all([
        await expectCode('ERR_GPU_LIMIT', () => submit(ctx, (e) => op.runRoute(e, ctx.tensor([1, 300], 'f32'), ctx.tensor([1, 300], 'f32'), 2, true))),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.runRoute(e, logits, ctx.tensor([2, 8], 'f32'), 9, true))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.runRoute(e, logits, ctx.tensor([2, 4], 'f32'), 2, true))),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.runAddWeighted(e, ctx.tensor([2, 4], 'f32'), ctx.tensor([2, 4], 'f32'), logits, 8, ctx.tensor([2, 4], 'f32')))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.runAddWeighted(e, ctx.tensor([2, 4], 'f32'), ctx.tensor([3, 4], 'f32'), logits, 1, ctx.tensor([2, 4], 'f32')))),
      ]);
    },
  },
];
