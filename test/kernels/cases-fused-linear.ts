// The fused matrix-vector kernels (kernels/matvec.ts MatvecFusion) against their CPU references
// composed: RMSNorm then linear (+ bias), linear + residual, and a [gate; up] weight through
// SwiGLU / GeGLU with or without the norm ahead; every weight dtype, both kernels (GPU reduction,
// CPU whole rows), odd gated widths, a weight split into parts, the reduce kernel's wide loop and
// the vec4 loop beside it, and the split activation that prefill uses. Named errors for what has
// no fused path.
import { gegluRef, swigluRef } from '../../kernels/cpu/activation.ts';
import { addRef } from '../../kernels/cpu/add.ts';
import { linearRef } from '../../kernels/cpu/matmul.ts';
import { rmsNormRef } from '../../kernels/cpu/norm.ts';
import { GatedOp } from '../../kernels/activation.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { LinearOp } from '../../kernels/linear.ts';
import { MatvecOp, type MatvecFusion, type MatvecKernel } from '../../kernels/matvec.ts';
import { storedWeights, type ScaleDtype } from '../../kernels/quant.ts';
import { partBytes, uploadWeight, type FloatWeightDtype } from '../../kernels/weights.ts';
import { freeWeight } from './cases-matmul.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type CaseOutcome, type KernelCase } from './check.ts';

type Fusion = 'norm' | 'norm+bias' | 'residual' | 'swiglu' | 'norm+geglu';
const FUSIONS: Fusion[] = ['norm', 'norm+bias', 'residual', 'swiglu', 'norm+geglu'];
const EPS = 1e-5;

// [M, K, N]: N past a multiple of four, gated widths I = N / 2 odd, two rows of x, long K (the
// reduce kernel's widest rows). K % 32 == 0 so that q4 takes every shape.
const SHAPES: [number, number, number][] = [[1, 64, 40], [1, 96, 66], [2, 128, 70], [1, 1024, 26], [1, 4096, 6]];

// The reduce kernel's wide loop (K a multiple of the unit: f16 8, q8 16, q4 32; 37 units leave a
// tail) and, for f16 and q8, K % 4 == 0 shapes that keep the vec4 loop. Gated widths I odd.
const WIDE_SHAPES: Record<'f16' | 'q8' | 'q4', [number, number, number][]> = {
  f16: [[2, 40, 38], [1, 296, 22], [1, 36, 22], [2, 20, 14]],
  q8: [[2, 48, 38], [1, 592, 22], [1, 40, 22], [2, 36, 14]],
  q4: [[2, 96, 38], [1, 1184, 22], [1, 32, 14]],
};

/** The composed reference: the separate steps in f64 / f32 on the weights as stored. */
function reference(fusion: Fusion, x: Float32Array, M: number, K: number, w: Float32Array, N: number, gamma: Float32Array, extra: Float32Array): Float32Array {
  const h = fusion.startsWith('norm') ? rmsNormRef(x, gamma, EPS) : x;
  const y = linearRef(h, M, K, w, N);
  if (fusion === 'norm+bias') return addRef(y, extra);
  if (fusion === 'residual') return addRef(extra, y);
  if (fusion === 'norm') return y;
  const I = N / 2;
  const gate = new Float32Array(M * I);
  const up = new Float32Array(M * I);
  for (let m = 0; m < M; m++) {
    gate.set(y.subarray(m * N, m * N + I), m * I);
    up.set(y.subarray(m * N + I, (m + 1) * N), m * I);
  }
  return fusion === 'swiglu' ? swigluRef(gate, up) : gegluRef(gate, up);
}

interface FusedCheck {
  kernel?: MatvecKernel;
  dtype: FloatWeightDtype;
  fusion: Fusion;
  shape: [number, number, number];
  /** Rows per weight part (LinearOp.fused, or the kernel run per part); whole weight when absent. */
  partRows?: number;
  /** Scales of q8 / q4 (default f32). */
  scaleDtype?: ScaleDtype;
  /** false: the kernel's shared-memory reduction even where the adapter has subgroups. */
  subgroups?: boolean;
}

async function checkFused(ctx: GpuContext, c: FusedCheck, seed: number): Promise<CaseOutcome> {
  const [M, K, N] = c.shape;
  const gatedKind = c.fusion === 'swiglu' ? 'swiglu' : c.fusion === 'norm+geglu' ? 'geglu' : undefined;
  const outCols = gatedKind ? N / 2 : N;
  const x = randomFloats(seed, M * K, -2, 2);
  const w = randomFloats(seed + 1, N * K, -0.2, 0.2);
  const gamma = randomFloats(seed + 2, K, 0.5, 1.5);
  const extra = randomFloats(seed + 3, c.fusion === 'residual' ? M * N : N);
  const weight = uploadWeight(ctx, w, [N, K], c.dtype, { scaleDtype: c.scaleDtype, maxBindingBytes: c.partRows ? partBytes(c.dtype, c.partRows, K, c.scaleDtype) : undefined });
  const xt = ctx.tensor([M, K], 'f32', x, 'x');
  const gt = ctx.tensor([K], 'f32', gamma, 'gamma');
  const et = ctx.tensor(c.fusion === 'residual' ? [M, N] : [N], 'f32', extra, 'extra');
  const out = ctx.tensor([M, outCols], 'f32', undefined, 'out');
  const fusion: MatvecFusion = {};
  if (c.fusion.startsWith('norm')) fusion.norm = { weight: gt, eps: EPS };
  if (c.fusion === 'norm+bias') fusion.add = { kind: 'bias', tensor: et };
  if (c.fusion === 'residual') fusion.add = { kind: 'residual', tensor: et };
  if (gatedKind) fusion.gated = gatedKind;
  if (c.kernel) {
    const op = new MatvecOp(ctx, { kernel: c.kernel, f16: ctx.f16 ? 'auto' : 'packed', subgroups: c.subgroups });
    submit(ctx, (e) => weight.parts.forEach((part) => op.run(e, xt, part.tensor, out, part.rowStart, fusion)));
  } else {
    const op = new LinearOp(ctx);
    if (!op.canFuse(xt, weight, fusion)) return { ok: false, detail: `${c.dtype} ${c.fusion}: LinearOp.canFuse refused [${c.shape.join(', ')}] in ${weight.parts.length} parts` };
    submit(ctx, (e) => op.fused(e, xt, weight, out, fusion));
  }
  const got = (await ctx.read(out)) as Float32Array;
  for (const t of [xt, gt, et, out]) t.buffer.destroy();
  freeWeight(weight);
  const want = reference(c.fusion, x, M, K, storedWeights(w, N, K, c.dtype, c.scaleDtype), N, gamma, extra);
  const { atol, rtol } = TOL[c.dtype];
  const outcome = allclose(got, want, atol, rtol);
  return { ok: outcome.ok, detail: `${c.kernel ?? 'linear'}${c.subgroups === false ? ' (no subgroups)' : ''} ${c.dtype}${c.scaleDtype ? `/${c.scaleDtype}` : ''} ${c.fusion} [${c.shape.join(', ')}] ${weight.parts.length} part(s): ${outcome.detail}` };
}

export const CASES: KernelCase[] = [
  ...(['rows', 'reduce'] as const).flatMap((kernel) =>
    (['f32', 'f16', 'q8', 'q4'] as const).map(
      (dtype): KernelCase => ({
        name: `fused matvec: ${kernel} kernel, ${dtype}: norm, bias, residual, SwiGLU and GeGLU epilogues`,
        async run(ctx) {
          const outcomes = [];
          for (const [f, fusion] of FUSIONS.entries()) {
            for (const [s, shape] of SHAPES.entries()) outcomes.push(await checkFused(ctx, { kernel, dtype, fusion, shape }, 1000 * f + 10 * s + 3));
          }
          return all(outcomes);
        },
      }),
    ),
  ),
  {
    name: 'fused matvec: reduce kernel, the wide loop and the vec4 loop beside it, every fusion (split weights, f16 scales, with and without subgroups)',
    async run(ctx) {
      const outcomes = [];
      for (const dtype of ['f16', 'q8', 'q4'] as const) {
        for (const [s, shape] of WIDE_SHAPES[dtype].entries()) {
          for (const [f, fusion] of FUSIONS.entries()) {
            const seed = 5000 + 1000 * f + 10 * s;
            outcomes.push(await checkFused(ctx, { kernel: 'reduce', dtype, fusion, shape }, seed));
            // A gated weight is one part; the others run per part of 5 rows, each with its columns.
            const gated = fusion === 'swiglu' || fusion === 'norm+geglu';
            if (!gated) outcomes.push(await checkFused(ctx, { kernel: 'reduce', dtype, fusion, shape, partRows: 5 }, seed + 1));
            if (dtype !== 'f16') outcomes.push(await checkFused(ctx, { kernel: 'reduce', dtype, fusion, shape, scaleDtype: 'f16', partRows: gated ? undefined : 7 }, seed + 2));
            if (ctx.subgroups) outcomes.push(await checkFused(ctx, { kernel: 'reduce', dtype, fusion, shape, subgroups: false }, seed + 3));
          }
        }
      }
      return all(outcomes);
    },
  },
  {
    name: 'fused linear: a weight split into parts (norm, bias, residual per part; gated needs one part)',
    async run(ctx) {
      const outcomes = [];
      for (const dtype of ['f32', 'q4'] as const) {
        for (const fusion of ['norm+bias', 'residual'] as const) outcomes.push(await checkFused(ctx, { dtype, fusion, shape: [1, 64, 70], partRows: 24 }, 77));
        outcomes.push(await checkFused(ctx, { dtype, fusion: 'swiglu', shape: [1, 64, 40] }, 78));
      }
      const op = new LinearOp(ctx);
      const split = uploadWeight(ctx, randomFloats(5, 40 * 64), [40, 64], 'f32', { maxBindingBytes: partBytes('f32', 16, 64) });
      const x = ctx.tensor([1, 64], 'f32', randomFloats(6, 64));
      const refused = !op.canFuse(x, split, { gated: 'swiglu' }) && !op.canFuse(ctx.tensor([2, 64], 'f32'), split, { add: { kind: 'residual', tensor: x } });
      freeWeight(split);
      outcomes.push({ ok: refused, detail: 'a gated weight in parts and two rows of x (prefill) take the separate kernels' });
      return all(outcomes);
    },
  },
  {
    name: 'gated split activation (prefill after a fused [gate; up] product)',
    async run(ctx) {
      const outcomes = [];
      for (const [T, I] of [[1, 5], [7, 33], [64, 300]] as const) {
        const gu = randomFloats(T * I, T * 2 * I, -6, 6);
        const gate = new Float32Array(T * I);
        const up = new Float32Array(T * I);
        for (let t = 0; t < T; t++) {
          gate.set(gu.subarray(t * 2 * I, t * 2 * I + I), t * I);
          up.set(gu.subarray(t * 2 * I + I, (t + 1) * 2 * I), t * I);
        }
        for (const kind of ['swiglu', 'geglu'] as const) {
          const gut = ctx.tensor([T, 2 * I], 'f32', gu);
          const out = ctx.tensor([T, I], 'f32');
          submit(ctx, (e) => new GatedOp(ctx, kind).runSplit(e, gut, out));
          const want = kind === 'swiglu' ? swigluRef(gate, up) : gegluRef(gate, up);
          outcomes.push(allclose((await ctx.read(out)) as Float32Array, want, TOL.f32.atol, TOL.f32.rtol));
          gut.buffer.destroy();
          out.buffer.destroy();
        }
      }
      return all(outcomes);
    },
  },
  {
    name: 'fused matvec: odd K, wrong norm or addend shapes and a misshapen gated out are named errors',
    async run(ctx) {
      const op = new MatvecOp(ctx);
      const w = uploadWeight(ctx, randomFloats(1, 8 * 37), [8, 37], 'f32').parts[0]!.tensor;
      const w64 = uploadWeight(ctx, randomFloats(2, 8 * 64), [8, 64], 'f32').parts[0]!.tensor;
      const x37 = ctx.tensor([1, 37], 'f32');
      const x64 = ctx.tensor([1, 64], 'f32');
      const out8 = ctx.tensor([1, 8], 'f32');
      return all([
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.run(e, x37, w, out8, 0, { norm: { weight: ctx.tensor([37], 'f32'), eps: EPS } }))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, x64, w64, out8, 0, { norm: { weight: ctx.tensor([63], 'f32'), eps: EPS } }))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, x64, w64, out8, 0, { add: { kind: 'residual', tensor: ctx.tensor([1, 7], 'f32') } }))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, x64, w64, out8, 0, { gated: 'swiglu' }))),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.run(e, x64, w64, ctx.tensor([1, 4], 'f32'), 0, { gated: 'swiglu', add: { kind: 'bias', tensor: ctx.tensor([4], 'f32') } }))),
      ]);
    },
  },
];
