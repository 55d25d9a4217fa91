import { ArgmaxOp } from '../../kernels/argmax.ts';
import { argmaxRef } from '../../kernels/cpu/argmax.ts';
import { all, expectCode, randomFloats, submit, type CaseOutcome, type KernelCase } from './check.ts';

const shapes: [number, number][] = [[1, 1], [3, 7], [37, 300], [2, 32_000], [1, 128_256]];

function equal(got: ArrayLike<number>, want: ArrayLike<number>): CaseOutcome {
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) return { ok: false, detail: `row ${i}: got ${got[i]}, want ${want[i]}` };
  }
  return { ok: got.length === want.length, detail: `${want.length} rows equal` };
}

const cases: KernelCase[] = [
  {
    name: 'argmax: seeded rows up to a 128k vocabulary',
    async run(ctx) {
      const op = new ArgmaxOp(ctx);
      const outcomes = [];
      for (const [i, [rows, cols]] of shapes.entries()) {
        const x = randomFloats(500 + i, rows * cols, -10, 10);
        const out = ctx.tensor([rows], 'u32');
        submit(ctx, (e) => op.run(e, ctx.tensor([rows, cols], 'f32', x), out));
        outcomes.push(equal(await ctx.read(out), argmaxRef(x, cols)));
      }
      return all(outcomes);
    },
  },
  {
    name: 'argmax: ties give the lowest index, NaN never wins',
    async run(ctx) {
      const op = new ArgmaxOp(ctx);
      const cols = 1000;
      const rows: [number[], number][] = [
        [[], 0], // all equal
        [[256, 1], 1], // same maximum in two threads' first and second strides
        [[999, 300, 5], 5],
        [[700, 512], 512],
      ];
      const x = new Float32Array((rows.length + 4) * cols);
      rows.forEach(([at], r) => at.forEach((c) => (x[r * cols + c] = 2)));
      const nanRow = rows.length;
      x.fill(Number.NaN, nanRow * cols, (nanRow + 1) * cols); // only NaN: 0
      x.fill(-1, (nanRow + 1) * cols, (nanRow + 2) * cols);
      x.set([Number.NaN, 5, Number.NaN, 7, 7], (nanRow + 1) * cols); // NaN first, then a tie: 3
      x.fill(Number.NEGATIVE_INFINITY, (nanRow + 2) * cols, (nanRow + 3) * cols); // only -inf: 0
      x.fill(-0, (nanRow + 3) * cols, (nanRow + 4) * cols);
      x[(nanRow + 3) * cols + 400] = 0; // -0 and +0 tie: 0
      const out = ctx.tensor([rows.length + 4], 'u32');
      submit(ctx, (e) => op.run(e, ctx.tensor([rows.length + 4, cols], 'f32', x), out));
      const want = [...rows.map(([, w]) => w), 0, 3, 0, 0];
      return all([equal(await ctx.read(out), want), equal(argmaxRef(x, cols), want)]);
    },
  },
  {
    name: 'argmax: wrong shapes and dtypes are named errors',
    async run(ctx) {
      const op = new ArgmaxOp(ctx);
      const x = ctx.tensor([4, 8], 'f32');
      return all([
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, x, ctx.tensor([8], 'u32')))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, x, ctx.tensor([4], 'f32')))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, ctx.tensor([4, 0], 'f32'), ctx.tensor([4], 'u32')))),
      ]);
    },
  },
];

// In a GPU error scope: an invalid shader or binding fails the case instead of reading zeros.
export const CASES: KernelCase[] = cases.map((c) => ({ name: c.name, run: (ctx) => ctx.scoped(() => c.run(ctx)) }));
