// The tiled matrix product (prefill) and the linear layer around it: every weight dtype on seeded
// shapes that are not tile multiples, weights split into parts, and the named errors. The helper
// checkLinearCase is shared with cases-matvec.ts.
import { linearF16ActivationsRef, linearRef } from '../../kernels/cpu/matmul.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { LinearOp } from '../../kernels/linear.ts';
import { MatmulOp } from '../../kernels/matmul.ts';
import { MatvecOp } from '../../kernels/matvec.ts';
import { storedWeights, type ScaleDtype } from '../../kernels/quant.ts';
import { partBytes, uploadWeight, type F16Mode, type GpuWeight, type FloatWeightDtype as WeightDtype } from '../../kernels/weights.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type CaseOutcome, type KernelCase } from './check.ts';

export interface LinearCheck {
  kernel: 'matvec' | 'matmul' | 'linear';
  dtype: WeightDtype;
  shape: [M: number, K: number, N: number];
  seed: number;
  scaleDtype?: ScaleDtype;
  f16?: F16Mode;
  maxBindingBytes?: number;
}

export function freeWeight(weight: GpuWeight): void {
  for (const part of weight.parts) {
    part.tensor.buffer.destroy();
    part.tensor.scales?.destroy();
  }
}

/** Runs one kernel on seeded x and w and returns its output and the reference for it. */
export async function linearOutputs(ctx: GpuContext, c: LinearCheck): Promise<{ got: Float32Array; want: Float32Array; parts: number }> {
  const [M, K, N] = c.shape;
  const x = randomFloats(c.seed, M * K);
  const w = randomFloats(c.seed + 1, N * K);
  const weight = uploadWeight(ctx, w, [N, K], c.dtype, { scaleDtype: c.scaleDtype, maxBindingBytes: c.maxBindingBytes, label: 'w' });
  const xt = ctx.tensor([M, K], 'f32', x, 'x');
  const out = ctx.tensor([M, N], 'f32', undefined, 'out');
  const options = { f16: c.f16 ?? 'packed' };
  const op = c.kernel === 'linear' ? new LinearOp(ctx, options) : c.kernel === 'matvec' ? new MatvecOp(ctx, options) : new MatmulOp(ctx, options);
  submit(ctx, (e) => {
    if (op instanceof LinearOp) op.run(e, xt, weight, out);
    else op.run(e, xt, weight.parts[0]!.tensor, out);
  });
  const got = (await ctx.read(out)) as Float32Array;
  freeWeight(weight);
  xt.buffer.destroy();
  out.buffer.destroy();
  const stored = storedWeights(w, N, K, c.dtype, c.scaleDtype);
  // The native f16 matmul stages x as f16; the other kernels use x as given.
  const viaMatmul = c.kernel === 'matmul' || (c.kernel === 'linear' && M > 1);
  const f16Activations = c.dtype === 'f16' && op.nativeF16 && viaMatmul;
  const want = f16Activations ? linearF16ActivationsRef(x, M, K, stored, N) : linearRef(x, M, K, stored, N);
  return { got, want, parts: weight.parts.length };
}

/** One kernel against the f64 reference on the weights as stored, with its dtype's tolerance. */
export async function checkLinearCase(ctx: GpuContext, c: LinearCheck): Promise<CaseOutcome> {
  const { got, want } = await linearOutputs(ctx, c);
  const tol = c.f16 === 'native' ? TOL.f16 : TOL[c.dtype];
  const outcome = allclose(got, want, tol.atol, tol.rtol);
  const scale = c.scaleDtype ? `/${c.scaleDtype} scales` : '';
  return { ok: outcome.ok, detail: `${c.kernel} ${c.dtype}${scale}${c.f16 === 'native' ? '/native' : ''} [${c.shape.join(', ')}]: ${outcome.detail}` };
}

export async function checkShapes(ctx: GpuContext, base: Omit<LinearCheck, 'shape' | 'seed'>, shapes: [number, number, number][]): Promise<CaseOutcome> {
  const outcomes = [];
  for (const [i, shape] of shapes.entries()) outcomes.push(await checkLinearCase(ctx, { ...base, shape, seed: 100 * i + 7 }));
  return all(outcomes);
}

// [M, K, N]: one row, tile remainders on every side, K = 1, odd K (f16 rows off word alignment).
const SHAPES: [number, number, number][] = [[1, 32, 17], [2, 64, 7], [3, 1, 5], [5, 64, 64], [17, 96, 65], [64, 128, 96], [33, 200, 70], [70, 35, 129]];
// q4 needs K % 32 == 0.
const Q4_SHAPES: [number, number, number][] = [[1, 32, 17], [2, 64, 7], [5, 64, 64], [17, 96, 65], [64, 128, 96], [33, 256, 70]];

function dtypeCase(dtype: WeightDtype, scaleDtype?: ScaleDtype): KernelCase {
  return {
    name: `matmul: ${dtype}${scaleDtype ? ` with ${scaleDtype} scales` : ''} weights on seeded shapes (non-tile sizes)`,
    run: (ctx) => checkShapes(ctx, { kernel: 'matmul', dtype, scaleDtype }, dtype === 'q4' ? Q4_SHAPES : SHAPES),
  };
}

export const CASES: KernelCase[] = [
  dtypeCase('f32'),
  dtypeCase('f16'),
  dtypeCase('q8'),
  dtypeCase('q4'),
  dtypeCase('q8', 'f16'),
  dtypeCase('q4', 'f16'),
  {
    name: 'matmul: native f16 path (shader-f16 adapters; ERR_GPU_FEATURE elsewhere)',
    async run(ctx) {
      if (!ctx.f16) return expectCode('ERR_GPU_FEATURE', () => new MatmulOp(ctx, { f16: 'native' }));
      return checkShapes(ctx, { kernel: 'matmul', dtype: 'f16', f16: 'native' }, SHAPES);
    },
  },
  {
    name: 'linear: every dtype through LinearOp, decode (M = 1) and prefill',
    async run(ctx) {
      const outcomes = [];
      for (const dtype of ['f32', 'f16', 'q8', 'q4'] as const) {
        const f16 = ctx.f16 ? 'auto' : 'packed';
        outcomes.push(await checkShapes(ctx, { kernel: 'linear', dtype, f16 }, [[1, 96, 33], [9, 64, 40]]));
      }
      return all(outcomes);
    },
  },
  {
    name: 'linear: K = 0 gives zeros and N = 0 dispatches nothing',
    async run(ctx) {
      const outcomes: CaseOutcome[] = [];
      for (const dtype of ['f32', 'f16', 'q8', 'q4'] as const) {
        for (const M of [1, 3]) {
          outcomes.push(await checkLinearCase(ctx, { kernel: 'linear', dtype, shape: [M, 0, 5], seed: 9, f16: 'packed' }));
          outcomes.push(await checkLinearCase(ctx, { kernel: 'linear', dtype, shape: [M, 32, 0], seed: 9, f16: 'packed' }));
        }
      }
      return all(outcomes);
    },
  },
  {
    name: 'linear: a weight split into 3 parts (uneven last) gives the same output as one part',
    async run(ctx) {
      const outcomes: CaseOutcome[] = [];
      const [K, N] = [64, 70];
      for (const dtype of ['f32', 'f16', 'q8', 'q4'] as const) {
        for (const M of [1, 5]) {
          const check: LinearCheck = { kernel: 'linear', dtype, shape: [M, K, N], seed: 31 };
          const whole = await linearOutputs(ctx, check);
          // 30 rows per part: 30 + 30 + 10.
          const split = await linearOutputs(ctx, { ...check, maxBindingBytes: partBytes(dtype, 30, K) });
          const same = split.got.every((v, i) => v === whole.got[i]);
          outcomes.push({ ok: split.parts === 3 && same, detail: `${dtype} M=${M}: ${split.parts} parts, identical: ${same}` });
          outcomes.push(allclose(split.got, split.want, TOL[dtype].atol, TOL[dtype].rtol));
        }
      }
      return all(outcomes);
    },
  },
  {
    name: 'linear: uploadWeight splits by rows and refuses a row larger than a binding',
    async run(ctx) {
      const w = randomFloats(3, 10 * 64);
      const weight = uploadWeight(ctx, w, [10, 64], 'q4', { maxBindingBytes: 4 * 32, scaleDtype: 'f16' });
      const rows = weight.parts.map((p) => `${p.rowStart}+${p.rows}`).join(' ');
      freeWeight(weight);
      const limit = await expectCode('ERR_GPU_LIMIT', () => uploadWeight(ctx, w, [10, 64], 'f32', { maxBindingBytes: 100 }));
      return all([
        { ok: rows === '0+4 4+4 8+2', detail: `parts ${rows}` },
        limit,
        { ok: /maxBindingBytes \(100\)/.test(limit.detail), detail: 'names the limit' },
      ]);
    },
  },
  {
    name: 'linear: wrong shapes and dtypes are named errors',
    async run(ctx) {
      const op = new LinearOp(ctx, { f16: 'packed' });
      const weight = uploadWeight(ctx, randomFloats(4, 8 * 16), [8, 16], 'f32');
      const x = ctx.tensor([2, 16], 'f32');
      const out = ctx.tensor([2, 8], 'f32');
      const run = (xt = x, o = out) => submit(ctx, (e) => op.run(e, xt, weight, o));
      const outcomes = [
        await expectCode('ERR_SHAPE_MISMATCH', () => run(ctx.tensor([2, 15], 'f32'))),
        await expectCode('ERR_SHAPE_MISMATCH', () => run(ctx.tensor([16], 'f32'))),
        await expectCode('ERR_SHAPE_MISMATCH', () => run(x, ctx.tensor([2, 9], 'f32'))),
        await expectCode('ERR_SHAPE_MISMATCH', () => run(x, ctx.tensor([3, 8], 'f32'))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => run(ctx.tensor([2, 16], 'u32'))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => run(ctx.tensor([2, 16], 'f16'))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => run(x, ctx.tensor([2, 8], 'i32'))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => new MatmulOp(ctx).run(e, x, ctx.tensor([8, 16], 'u32'), out))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => new MatvecOp(ctx).run(e, x, weight.parts[0]!.tensor, out, 1))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => uploadWeight(ctx, new Float32Array(4), [2, 2], 'u32')),
        await expectCode('ERR_SHAPE_MISMATCH', () => uploadWeight(ctx, new Float32Array(34), [2, 17], 'q4')),
        await expectCode('ERR_SHAPE_MISMATCH', () => uploadWeight(ctx, new Float32Array(5), [2, 3], 'f32')),
      ];
      freeWeight(weight);
      return all(outcomes);
    },
  },
];
