import { GatedOp, GeluOp, SiluOp } from '../../kernels/activation.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { gegluRef, geluRef, siluRef, swigluRef } from '../../kernels/cpu/activation.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type CaseOutcome, type KernelCase } from './check.ts';

const shapes: number[][] = [[1], [1000], [3, 4097], [37, 300], [1, 70_001]];

/** Inputs far out on both tails, where a naive exp or tanh overflows. */
const EXTREME = new Float32Array([-1e30, -1000, -88.7, -80, -79.5, -20, -10.5, -10, -5, -1e-6, -0, 0, 1e-6, 5, 10, 10.5, 20, 79.5, 80, 88.7, 1000, 1e30]);

function finite(values: Float32Array): CaseOutcome {
  const bad = values.findIndex((v) => !Number.isFinite(v));
  return bad < 0 ? { ok: true, detail: 'all finite' } : { ok: false, detail: `non-finite ${values[bad]} at ${bad}` };
}

async function unary(ctx: GpuContext, op: SiluOp | GeluOp, ref: (x: Float32Array) => Float32Array, seed: number): Promise<CaseOutcome> {
  const outcomes = [];
  for (const [i, shape] of [...shapes, [EXTREME.length]].entries()) {
    const x = i < shapes.length ? randomFloats(seed + i, shape.reduce((a, b) => a * b), -8, 8) : EXTREME;
    const out = ctx.tensor(shape, 'f32');
    submit(ctx, (e) => op.run(e, ctx.tensor(shape, 'f32', x), out));
    const got = (await ctx.read(out)) as Float32Array;
    outcomes.push(finite(got), allclose(got, ref(x), TOL.f32.atol, TOL.f32.rtol));
  }
  return all(outcomes);
}

const cases: KernelCase[] = [
  {
    name: 'silu: seeded shapes and |x| up to 1e30 (no NaN or Inf)',
    run: (ctx) => unary(ctx, new SiluOp(ctx), siluRef, 300),
  },
  {
    name: 'gelu (tanh form): seeded shapes and |x| up to 1e30 (no NaN or Inf)',
    run: (ctx) => unary(ctx, new GeluOp(ctx), geluRef, 310),
  },
  {
    name: 'swiglu and geglu: seeded [T, I] with T = 1 and 37, extreme gates',
    async run(ctx) {
      const outcomes = [];
      for (const [kind, ref] of [['swiglu', swigluRef], ['geglu', gegluRef]] as const) {
        const op = new GatedOp(ctx, kind);
        const cases: [number[], Float32Array | null][] = [[[1, 11008], null], [[37, 300], null], [[1, EXTREME.length], EXTREME]];
        for (const [i, [shape, fixed]] of cases.entries()) {
          const n = shape.reduce((a, b) => a * b);
          const gate = fixed ?? randomFloats(320 + i, n, -8, 8);
          const up = randomFloats(330 + i, n, -2, 2);
          const out = ctx.tensor(shape, 'f32');
          submit(ctx, (e) => op.run(e, ctx.tensor(shape, 'f32', gate), ctx.tensor(shape, 'f32', up), out));
          const got = (await ctx.read(out)) as Float32Array;
          outcomes.push(finite(got), allclose(got, ref(gate, up), TOL.f32.atol, TOL.f32.rtol));
        }
      }
      return all(outcomes);
    },
  },
  {
    name: 'activations: wrong shapes, dtypes and aliasing are named errors',
    async run(ctx) {
      const silu = new SiluOp(ctx);
      const swiglu = new GatedOp(ctx);
      const a = ctx.tensor([4, 8], 'f32');
      const b = ctx.tensor([4, 8], 'f32');
      return all([
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => silu.run(e, a, ctx.tensor([8, 4], 'f32')))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => silu.run(e, ctx.tensor([4, 8], 'f16'), b))),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => silu.run(e, a, a))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => swiglu.run(e, a, ctx.tensor([4, 9], 'f32'), b))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => swiglu.run(e, a, b, ctx.tensor([4, 8], 'u32')))),
      ]);
    },
  },
];

// In a GPU error scope: an invalid shader or binding fails the case instead of reading zeros.
export const CASES: KernelCase[] = cases.map((c) => ({ name: c.name, run: (ctx) => ctx.scoped(() => c.run(ctx)) }));
