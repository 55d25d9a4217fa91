import { CastOp } from '../../kernels/cast.ts';
import { castF16ToF32, castF32ToF16 } from '../../kernels/cpu/cast.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type CaseOutcome, type KernelCase } from './check.ts';

/** Non-finite expected values must come back exactly (allclose cannot judge them). */
function specialsMatch(got: ArrayLike<number>, want: ArrayLike<number>): CaseOutcome {
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    if (!Number.isFinite(w) && !Object.is(got[i], w)) return { ok: false, detail: `at ${i}: got ${got[i]}, want ${w}` };
  }
  return { ok: true, detail: 'specials match' };
}

/** Finite comparisons only: non-finite expected values are zeroed in both (see specialsMatch). */
function closeFinite(got: Float32Array, want: Float32Array, atol: number, rtol: number): CaseOutcome {
  const keep = (v: number, i: number) => (Number.isFinite(want[i]!) ? v : 0);
  return allclose(got.map(keep), want.map(keep), atol, rtol);
}

/** f32 values of every magnitude f16 covers, with both signs. */
function wideFloats(seed: number, n: number): Float32Array {
  const u = randomFloats(seed, n, 0, 1);
  const s = randomFloats(seed + 1, n);
  return u.map((v, i) => Math.sign(s[i]!) * 2 ** (-20 + 35 * v));
}

const allHalves = Uint32Array.from({ length: 32768 }, (_, i) => (2 * i) | ((2 * i + 1) << 16));

const cases: KernelCase[] = [
  {
    name: 'cast: f32 -> f16 on the GPU matches the CPU (odd sizes, overflow, NaN)',
    async run(ctx) {
      const op = new CastOp(ctx);
      const specials = new Float32Array([65504, 65510, 65520, -65520, 1e6, -1e30, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN, -0, 1e-9]);
      const outcomes = [];
      for (const x of [wideFloats(700, 1), wideFloats(702, 2), wideFloats(704, 1001), wideFloats(706, 70_001), specials]) {
        const out = ctx.tensor([x.length], 'f16');
        submit(ctx, (e) => op.run(e, ctx.tensor([x.length], 'f32', x), out));
        const got = castF16ToF32(await ctx.read(out) as Uint32Array, x.length);
        const want = castF16ToF32(castF32ToF16(x), x.length);
        outcomes.push(specialsMatch(got, want), closeFinite(got, want, TOL.f16.atol, TOL.f16.rtol));
      }
      return all(outcomes);
    },
  },
  {
    name: 'cast: f16 -> f32 on the GPU decodes every half; f32 -> f16 -> f32 is exact on them',
    async run(ctx) {
      const op = new CastOp(ctx);
      const halves = ctx.tensor([65536], 'f16', allHalves);
      const decoded = ctx.tensor([65536], 'f32');
      const back = ctx.tensor([65536], 'f16');
      submit(ctx, (e) => {
        op.run(e, halves, decoded);
        op.run(e, decoded, back);
      });
      const want = castF16ToF32(allHalves);
      const got = (await ctx.read(decoded)) as Float32Array;
      const again = castF16ToF32((await ctx.read(back)) as Uint32Array);
      // Subnormal halves (< 6.1e-5) may be flushed to zero by a GPU; atol covers them.
      return all([
        specialsMatch(got, want),
        closeFinite(got, want, TOL.f16.atol, 0),
        specialsMatch(again, want),
        closeFinite(again, want, TOL.f16.atol, 0),
      ]);
    },
  },
  {
    name: 'cast: wrong shapes and dtypes are named errors',
    async run(ctx) {
      const op = new CastOp(ctx);
      const x = ctx.tensor([5], 'f32');
      return all([
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, x, ctx.tensor([6], 'f16')))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, x, ctx.tensor([5], 'f32')))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, ctx.tensor([5], 'u32'), x))),
      ]);
    },
  },
];

// In a GPU error scope: an invalid shader or binding fails the case instead of reading zeros.
export const CASES: KernelCase[] = cases.map((c) => ({ name: c.name, run: (ctx) => ctx.scoped(() => c.run(ctx)) }));
