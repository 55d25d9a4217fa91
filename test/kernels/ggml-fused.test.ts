// The fused matrix-vector kernel on GGML blocks (GgmlMatvecOp with a MatvecFusion) on Node's
// WebGPU: RMSNorm ahead, bias and residual epilogues and a [gate; up] weight through SwiGLU /
// GeGLU, every format, both kernels (GPU reduction, CPU whole rows), against the CPU norm,
// x · dequantize(W)ᵀ in f64 and the activation references.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gelu, silu } from '../../kernels/cpu/activation.ts';
import { rmsNormRef } from '../../kernels/cpu/norm.ts';
import { GpuContext } from '../../kernels/context.ts';
import { GgmlMatvecOp } from '../../kernels/ggml-linear.ts';
import { GGML_TYPE, dequantizeGgmlRows, type GgmlBlocks, type GgmlType } from '../../kernels/ggml-quants.ts';
import { uploadGgmlWeight } from '../../kernels/ggml-weights.ts';
import type { MatvecFusion, MatvecKernel } from '../../kernels/matvec.ts';
import { nodeGpu } from '../../kernels/node-gpu.ts';
import { quantizeGgml } from '../fixtures/ggml-quantize.ts';
import { randomFloats } from './check.ts';

const FORMATS: GgmlType[] = [GGML_TYPE.Q8_0, GGML_TYPE.Q4_0, GGML_TYPE.Q5_0, GGML_TYPE.Q4_K, GGML_TYPE.Q6_K];
const EPS = 1e-5;
/** |got - want| within this fraction of the sum of |terms| (f32 sums of a few hundred terms). */
const TOL = 1e-4;
type Fusion = 'norm+bias' | 'residual' | 'norm+swiglu' | 'geglu';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await GpuContext.create({ gpu: await nodeGpu() });
});
afterAll(() => ctx?.destroy());

/** The separate steps in f64 on the dequantized weight; `scale` bounds f32 rounding per output. */
function reference(fusion: Fusion, x: Float32Array, K: number, w: Float32Array, N: number, gamma: Float32Array, extra: Float32Array): { want: Float64Array; scale: Float64Array } {
  const h = fusion.startsWith('norm') ? rmsNormRef(x, gamma, EPS) : x;
  const y = new Float64Array(N);
  const size = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      y[n] = y[n]! + h[k]! * w[n * K + k]!;
      size[n] = size[n]! + Math.abs(h[k]! * w[n * K + k]!);
    }
  }
  if (fusion === 'norm+bias' || fusion === 'residual') return { want: y.map((v, n) => v + extra[n]!), scale: size.map((s, n) => s + Math.abs(extra[n]!)) };
  const I = N / 2;
  const act = fusion === 'geglu' ? gelu : silu;
  const want = Float64Array.from({ length: I }, (_, j) => act(y[j]!) * y[I + j]!);
  // The activation's slope is at most ~1.13: errors in gate and up carry over scaled by the other.
  const scale = Float64Array.from({ length: I }, (_, j) => 1.2 * size[j]! * Math.abs(y[I + j]!) + size[I + j]! * Math.abs(act(y[j]!)) + 1e-6);
  return { want, scale };
}

async function check(kernel: MatvecKernel, type: GgmlType, fusion: Fusion, K: number, N: number, seed: number): Promise<void> {
  const gated = fusion.endsWith('glu');
  const m: GgmlBlocks = { type, rows: N, cols: K, bytes: quantizeGgml(type, randomFloats(seed, N * K, -0.5, 0.5)) };
  const x = randomFloats(seed + 1, K, -2, 2);
  const gamma = randomFloats(seed + 2, K, 0.5, 1.5);
  const extra = randomFloats(seed + 3, N);
  const weight = uploadGgmlWeight(ctx, m);
  const xt = ctx.tensor([1, K], 'f32', x);
  const gt = ctx.tensor([K], 'f32', gamma);
  const et = ctx.tensor(fusion === 'residual' ? [1, N] : [N], 'f32', extra);
  const out = ctx.tensor([1, gated ? N / 2 : N], 'f32');
  const f: MatvecFusion = {};
  if (fusion.startsWith('norm')) f.norm = { weight: gt, eps: EPS };
  if (fusion === 'norm+bias') f.add = { kind: 'bias', tensor: et };
  if (fusion === 'residual') f.add = { kind: 'residual', tensor: et };
  if (gated) f.gated = fusion === 'geglu' ? 'geglu' : 'swiglu';
  const op = new GgmlMatvecOp(ctx, { kernel });
  const got = await ctx.scoped(async () => {
    const encoder = ctx.encoder();
    op.run(encoder, xt, weight.parts[0]!.tensor, out, 0, f);
    ctx.submit(encoder);
    return (await ctx.read(out)) as Float32Array;
  });
  const ref = reference(fusion, x, K, dequantizeGgmlRows(type, m.bytes, N, K), N, gamma, extra);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref.want[i]!) / ref.scale[i]!);
  for (const t of [xt, gt, et, out]) t.buffer.destroy();
  for (const part of weight.parts) {
    part.tensor.buffer.destroy();
    part.tensor.scales?.destroy();
  }
  expect(got.length).toBe(ref.want.length);
  expect(worst, `${kernel} ${type} ${fusion} [${N}, ${K}]`).toBeLessThanOrEqual(TOL);
}

describe('fused GGML matvec (Node WebGPU)', () => {
  for (const kernel of ['rows', 'reduce'] as const) {
    it(`${kernel}: every format with norm + bias, residual, norm + SwiGLU and GeGLU`, async () => {
      for (const [f, type] of FORMATS.entries()) {
        // N: past the rows per group (2 or 4), gated widths odd (I = 7, 33).
        for (const [i, [fusion, N]] of ([['norm+bias', 9], ['residual', 33], ['norm+swiglu', 14], ['geglu', 66]] as const).entries()) {
          await check(kernel, type, fusion, 256, N, 100 * f + 10 * i);
        }
      }
    });
  }
});
