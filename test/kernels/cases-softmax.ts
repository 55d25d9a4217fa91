import { softmaxRef } from '../../kernels/cpu/softmax.ts';
import { SoftmaxOp } from '../../kernels/softmax.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type KernelCase } from './check.ts';

// Rows x C: a single value, 1 row, C not a multiple of the workgroup, a vocabulary-sized row.
const shapes: [number, number][] = [[1, 1], [1, 7], [5, 300], [37, 129], [3, 32_000]];

const cases: KernelCase[] = [
  {
    name: 'softmax: seeded shapes, out of place and in place',
    async run(ctx) {
      const op = new SoftmaxOp(ctx);
      const outcomes = [];
      for (const [i, [rows, cols]] of shapes.entries()) {
        const x = randomFloats(400 + i, rows * cols, -6, 6);
        const tx = ctx.tensor([rows, cols], 'f32', x);
        const out = ctx.tensor([rows, cols], 'f32');
        submit(ctx, (e) => op.run(e, tx, out));
        const outOfPlace = await ctx.read(out);
        submit(ctx, (e) => op.run(e, tx, tx));
        const want = softmaxRef(x, cols);
        outcomes.push(allclose(outOfPlace, want, TOL.f32.atol, TOL.f32.rtol), allclose(await ctx.read(tx), want, TOL.f32.atol, TOL.f32.rtol));
      }
      return all(outcomes);
    },
  },
  {
    name: 'softmax: extreme rows (|x| ~ 80, 1e30 masks) stay finite',
    async run(ctx) {
      const op = new SoftmaxOp(ctx);
      const cols = 300;
      const x = randomFloats(410, 4 * cols, -80, 80);
      x.fill(80, 0, cols); // all equal, at the top of the range
      x.fill(-80, cols, 2 * cols);
      for (let c = 0; c < cols; c += 3) x[2 * cols + c] = -1e30; // masked positions
      x.set([88, -88, 1e4], 3 * cols);
      const out = ctx.tensor([4, cols], 'f32');
      submit(ctx, (e) => op.run(e, ctx.tensor([4, cols], 'f32', x), out));
      const got = (await ctx.read(out)) as Float32Array;
      const bad = got.findIndex((v) => !Number.isFinite(v));
      return all([
        { ok: bad < 0, detail: bad < 0 ? 'finite' : `non-finite ${got[bad]} at ${bad}` },
        allclose(got, softmaxRef(x, cols), TOL.f32.atol, TOL.f32.rtol),
      ]);
    },
  },
  {
    name: 'softmax: wrong shapes and dtypes are named errors',
    async run(ctx) {
      const op = new SoftmaxOp(ctx);
      const x = ctx.tensor([4, 8], 'f32');
      return all([
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, x, ctx.tensor([4, 7], 'f32')))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, ctx.tensor([4, 8], 'f16'), x))),
      ]);
    },
  },
];

// In a GPU error scope: an invalid shader or binding fails the case instead of reading zeros.
export const CASES: KernelCase[] = cases.map((c) => ({ name: c.name, run: (ctx) => ctx.scoped(() => c.run(ctx)) }));
