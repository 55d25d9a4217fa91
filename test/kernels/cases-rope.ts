import { ropeRef, type RopeScaling } from '../../kernels/cpu/rope.ts';
import { RopeOp } from '../../kernels/rope.ts';
import { mulberry32 } from '../helpers/random.ts';
import { all, allclose, expectCode, randomFloats, submit, type KernelCase } from './check.ts';

// The reference takes HF's f32 angle (inv_freq and pos * inv_freq rounded to f32, as the kernel
// does bit for bit) and f64 cos/sin of it. What is left on the GPU: the pi/2 reduction of that
// angle (exact products, a few 1e-8 rad), the sin/cos polynomials (~1e-7) and f32 rounding of
// a cos - b sin, so |diff| <= ~4e-7 * (|a| + |b|) for any position below 2e5. 1e-5 leaves room
// for a driver's own rounding and still fails a kernel that lets the angle drift (half an ulp of
// an angle of 8000 rad is 2.4e-4) or trusts builtin cos at thousands of radians.
const ROPE_TOL = { atol: 1e-5, rtol: 1e-5 };

// [T, heads, headDim, theta]: 1 token, 1 head, d = 2, d = 96 (not a power of two), LLaMA sizes.
const shapes: [number, number, number, number][] = [
  [1, 1, 2, 10_000],
  [1, 32, 128, 500_000],
  [7, 4, 64, 10_000],
  [37, 3, 96, 1_000_000],
  [5, 2, 256, 10_000],
];

function randomPositions(seed: number, tokens: number, max: number): Uint32Array {
  const rand = mulberry32(seed);
  const positions = Uint32Array.from({ length: tokens }, () => Math.floor(rand() * max));
  positions.set([0, max - 1, 8000, 4095].slice(0, tokens));
  return positions;
}

const cases: KernelCase[] = [
  {
    name: 'rope: seeded shapes, positions up to 8191, out of place and in place',
    async run(ctx) {
      const op = new RopeOp(ctx);
      const outcomes = [];
      for (const [i, [tokens, heads, headDim, theta]] of shapes.entries()) {
        const shape = [tokens, heads, headDim];
        const x = randomFloats(600 + i, tokens * heads * headDim);
        const positions = randomPositions(610 + i, tokens, 8192);
        const tx = ctx.tensor(shape, 'f32', x);
        const tp = ctx.tensor([tokens], 'u32', positions);
        const out = ctx.tensor(shape, 'f32');
        submit(ctx, (e) => op.run(e, tx, tp, out, theta));
        const outOfPlace = await ctx.read(out);
        submit(ctx, (e) => op.run(e, tx, tp, tx, theta));
        const want = ropeRef(x, positions, heads, headDim, theta);
        outcomes.push(allclose(outOfPlace, want, ROPE_TOL.atol, ROPE_TOL.rtol), allclose(await ctx.read(tx), want, ROPE_TOL.atol, ROPE_TOL.rtol));
      }
      return all(outcomes);
    },
  },
  {
    name: 'rope: long-context positions (to 131071) keep the same tolerance',
    async run(ctx) {
      const op = new RopeOp(ctx);
      const [tokens, heads, headDim] = [64, 2, 128];
      const x = randomFloats(620, tokens * heads * headDim);
      const positions = randomPositions(621, tokens, 131_072);
      const out = ctx.tensor([tokens, heads, headDim], 'f32');
      submit(ctx, (e) => op.run(e, ctx.tensor([tokens, heads, headDim], 'f32', x), ctx.tensor([tokens], 'u32', positions), out, 500_000));
      return allclose(await ctx.read(out), ropeRef(x, positions, heads, headDim, 500_000), ROPE_TOL.atol, ROPE_TOL.rtol);
    },
  },
  {
    name: 'rope: scaled frequencies (llama3, linear) as the CPU reference rotates',
    async run(ctx) {
      const op = new RopeOp(ctx);
      const [tokens, heads, headDim] = [9, 2, 128];
      const x = randomFloats(630, tokens * heads * headDim);
      const positions = randomPositions(631, tokens, 131_072);
      const scalings: RopeScaling[] = [
        { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 },
        { type: 'linear', factor: 4 },
      ];
      const outcomes = [];
      for (const scaling of scalings) {
        const out = ctx.tensor([tokens, heads, headDim], 'f32');
        submit(ctx, (e) => op.run(e, ctx.tensor([tokens, heads, headDim], 'f32', x), ctx.tensor([tokens], 'u32', positions), out, 500_000, scaling));
        outcomes.push(allclose(await ctx.read(out), ropeRef(x, positions, heads, headDim, 500_000, scaling), ROPE_TOL.atol, ROPE_TOL.rtol));
      }
      return all(outcomes);
    },
  },
  {
    name: 'rope: odd head size, wrong shapes, dtypes and theta are named errors',
    async run(ctx) {
      const op = new RopeOp(ctx);
      const x = ctx.tensor([4, 2, 8], 'f32');
      const pos = ctx.tensor([4], 'u32');
      return all([
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, ctx.tensor([4, 2, 7], 'f32'), pos, ctx.tensor([4, 2, 7], 'f32'), 1e4))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, x, ctx.tensor([3], 'u32'), x, 1e4))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, x, pos, ctx.tensor([4, 16], 'f32'), 1e4))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, ctx.tensor([4, 16], 'f32'), pos, x, 1e4))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, x, ctx.tensor([4], 'f32'), x, 1e4))),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.run(e, x, pos, x, 0))),
      ]);
    },
  },
];

// In a GPU error scope: an invalid shader or binding fails the case instead of reading zeros.
export const CASES: KernelCase[] = cases.map((c) => ({ name: c.name, run: (ctx) => ctx.scoped(() => c.run(ctx)) }));
