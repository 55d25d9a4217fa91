// Linear kernels on GGML-quantized weights (kernels/ggml-linear.ts) on Node's WebGPU: every format
// against x · dequantizeGgml(W)ᵀ in f64, both matrix-vector kernels and the tiled product, weights
// split into parts, rows alone and in a batch, exact dequantization, and the named errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GpuContext } from '../../kernels/context.ts';
import { GgmlLinearOp, GgmlMatmulOp, GgmlMatvecOp } from '../../kernels/ggml-linear.ts';
import { GGML_TYPE, dequantizeGgmlRows, type GgmlBlocks, type GgmlType } from '../../kernels/ggml-quants.ts';
import { splitPlanes, uploadGgmlWeight } from '../../kernels/ggml-weights.ts';
import { LinearOp } from '../../kernels/linear.ts';
import { MatvecOp, type MatvecKernel } from '../../kernels/matvec.ts';
import { nodeGpu } from '../../kernels/node-gpu.ts';
import { GGML_PLANES, type GgmlDType, type GpuTensor } from '../../kernels/tensor.ts';
import { partBytes, uploadWeight, type GpuWeight } from '../../kernels/weights.ts';
import { AigridError } from '../../protocol/index.ts';
import { quantizeGgml } from '../fixtures/ggml-quantize.ts';
import { mulberry32 } from '../helpers/random.ts';

const FORMATS: [GgmlType, GgmlDType][] = [
  [GGML_TYPE.Q8_0, 'q8_0'],
  [GGML_TYPE.Q4_0, 'q4_0'],
  [GGML_TYPE.Q5_0, 'q5_0'],
  [GGML_TYPE.Q4_K, 'q4_k'],
  [GGML_TYPE.Q6_K, 'q6_k'],
];

/** |got - want| within this fraction of sum_k |x| |w| (f32 sums of up to 4096 terms). */
const TOL = 1e-4;

// [M, K, N]: K = 256, 512 and 4096, N below, at and past the kernels' rows per group (2 or 4) and
// per workgroup, M = 1 (decode) and 2, 5, 17, 64 (prefill).
const SHAPES: [number, number, number][] = [
  [1, 256, 1], [1, 256, 7], [1, 512, 33], [1, 4096, 5], [2, 256, 9], [5, 512, 17], [17, 256, 13], [64, 512, 37], [5, 4096, 3],
];
// Q8_0, Q4_0 and Q5_0 blocks are 32: one block, and an odd count (rows start mid-word in the scale plane;
// Q5_0's 6-byte metas put qh across words too).
const SMALL_SHAPES: [number, number, number][] = [[1, 32, 3], [3, 96, 11]];

let ctx: GpuContext;

beforeAll(async () => {
  ctx = await GpuContext.create({ gpu: await nodeGpu() });
});

afterAll(() => ctx?.destroy());

/** Seeded values whose magnitude and offset change every 16 elements, so block scales and mins vary. */
function values(seed: number, n: number): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(n);
  let scale = 1;
  let offset = 0;
  for (let i = 0; i < n; i++) {
    if (i % 16 === 0) {
      scale = 2 ** Math.floor(rand() * 7 - 3);
      offset = rand() < 0.3 ? (rand() - 0.5) * scale : 0;
    }
    out[i] = (rand() * 2 - 1) * scale + offset;
  }
  return out;
}

function quantized(type: GgmlType, N: number, K: number, seed: number): GgmlBlocks {
  return { type, rows: N, cols: K, bytes: quantizeGgml(type, values(seed, N * K)) };
}

/** x · Wᵀ in f64 on the exactly dequantized weight, and sum |x| |w| per output. */
function reference(x: Float32Array, M: number, m: GgmlBlocks): { want: Float64Array; scale: Float64Array } {
  const { rows: N, cols: K } = m;
  const w = dequantizeGgmlRows(m.type, m.bytes, N, K);
  const want = new Float64Array(M * N);
  const scale = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        s += x[i * K + k]! * w[n * K + k]!;
        a += Math.abs(x[i * K + k]! * w[n * K + k]!);
      }
      want[i * N + n] = s;
      scale[i * N + n] = a;
    }
  }
  return { want, scale };
}

function expectClose(got: Float32Array, ref: { want: Float64Array; scale: Float64Array }, what: string): void {
  expect(got.length, what).toBe(ref.want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - ref.want[i]!) / Math.max(ref.scale[i]!, 1e-30);
    expect(Number.isFinite(got[i]!), `${what}: output ${i} is ${got[i]}`).toBe(true);
    worst = Math.max(worst, err);
  }
  expect(worst, `${what}: worst error / sum |x||w|`).toBeLessThanOrEqual(TOL);
}

type Runner = (encoder: GPUCommandEncoder, x: GpuTensor, weight: GpuWeight, out: GpuTensor) => void;

const linear = (): Runner => {
  const op = new LinearOp(ctx);
  return (e, x, w, out) => op.run(e, x, w, out);
};
const perPart = (op: { run(e: GPUCommandEncoder, x: GpuTensor, w: GpuTensor, out: GpuTensor, col0?: number): void }): Runner =>
  (e, x, w, out) => w.parts.forEach((part) => op.run(e, x, part.tensor, out, part.rowStart));

/** Runs `runner` on x [M, K] and a weight, inside error scopes (a GPU validation error fails). */
async function outputs(runner: Runner, x: Float32Array, M: number, weight: GpuWeight): Promise<Float32Array> {
  const [N, K] = weight.shape;
  const xt = ctx.tensor([M, K], 'f32', x, 'x');
  const out = ctx.tensor([M, N], 'f32', undefined, 'out');
  try {
    return await ctx.scoped(async () => {
      const encoder = ctx.encoder();
      runner(encoder, xt, weight, out);
      ctx.submit(encoder);
      return (await ctx.read(out)) as Float32Array;
    });
  } finally {
    xt.buffer.destroy();
    out.buffer.destroy();
  }
}

function free(weight: GpuWeight): void {
  for (const part of weight.parts) {
    part.tensor.buffer.destroy();
    part.tensor.scales?.destroy();
  }
}

async function expectCode(code: string, fn: () => unknown): Promise<void> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(AigridError);
  expect((caught as AigridError).code, (caught as Error).message).toBe(code);
}

describe('GGML planes', () => {
  it('split each block losslessly into quants and meta, with no padding', () => {
    for (const [type, dtype] of FORMATS) {
      const m = quantized(type, 3, 256, 5);
      const blocks = (3 * 256) / GGML_PLANES[dtype].elements;
      const { quants, meta } = splitPlanes(dtype, m.bytes, blocks);
      expect(quants.byteLength + blocks * GGML_PLANES[dtype].meta, dtype).toBe(m.bytes.byteLength);
      expect(quants.byteLength % 16, dtype).toBe(0);
      // Reassembled in the file's order, the planes give the file's bytes.
      const { quants: q, meta: mb } = GGML_PLANES[dtype];
      const back = new Uint8Array(m.bytes.byteLength);
      for (let b = 0; b < blocks; b++) {
        const at = b * (q + mb);
        const metaFirst = dtype !== 'q6_k';
        back.set(meta.subarray(b * mb, (b + 1) * mb), metaFirst ? at : at + q);
        back.set(quants.subarray(b * q, (b + 1) * q), metaFirst ? at + mb : at);
      }
      expect(back, dtype).toEqual(m.bytes);
    }
  });
});

describe('GGML linear kernels on WebGPU', () => {
  for (const [type, dtype] of FORMATS) {
    it(`${dtype}: LinearOp on seeded shapes (decode and prefill) matches x · dequantize(W)ᵀ`, async () => {
      const shapes = type === GGML_TYPE.Q8_0 || type === GGML_TYPE.Q4_0 || type === GGML_TYPE.Q5_0 ? [...SMALL_SHAPES, ...SHAPES] : SHAPES;
      const run = linear();
      for (const [i, [M, K, N]] of shapes.entries()) {
        const m = quantized(type, N, K, 100 + i);
        const x = values(200 + i, M * K);
        const weight = uploadGgmlWeight(ctx, m, { label: dtype });
        expect(weight.dtype).toBe(dtype);
        expectClose(await outputs(run, x, M, weight), reference(x, M, m), `${dtype} [${M}, ${K}, ${N}]`);
        free(weight);
      }
    });

    it(`${dtype}: both matrix-vector kernels and the tiled product at M = 1, 3`, async () => {
      for (const kernel of ['reduce', 'rows'] as MatvecKernel[]) {
        const run = perPart(new GgmlMatvecOp(ctx, { kernel }));
        for (const [M, K, N] of [[1, 256, 5], [3, 512, 10], [1, 4096, 9]] as const) {
          const m = quantized(type, N, K, K + N);
          const x = values(K + M, M * K);
          const weight = uploadGgmlWeight(ctx, m);
          expectClose(await outputs(run, x, M, weight), reference(x, M, m), `${kernel} ${dtype} [${M}, ${K}, ${N}]`);
          free(weight);
        }
      }
      const m = quantized(type, 6, 512, 3);
      const x = values(4, 512);
      const weight = uploadGgmlWeight(ctx, m);
      expectClose(await outputs(perPart(new GgmlMatmulOp(ctx)), x, 1, weight), reference(x, 1, m), `matmul ${dtype} M = 1`);
      free(weight);
    });

    it(`${dtype}: one-hot x reproduces the dequantized weight bit for bit (matvec and matmul)`, async () => {
      const [K, N] = [256, 5];
      const m = quantized(type, N, K, 77);
      const w = dequantizeGgmlRows(type, m.bytes, N, K);
      const x = new Float32Array(K * K);
      for (let k = 0; k < K; k++) x[k * K + k] = 1;
      const weight = uploadGgmlWeight(ctx, m);
      for (const [name, run] of [
        ['reduce', perPart(new GgmlMatvecOp(ctx, { kernel: 'reduce' }))],
        ['rows', perPart(new GgmlMatvecOp(ctx, { kernel: 'rows' }))],
        ['matmul', perPart(new GgmlMatmulOp(ctx))],
      ] as const) {
        const got = await outputs(run, x, K, weight);
        let bad = 0;
        for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) if (got[k * N + n] !== w[n * K + k]) bad++;
        expect(bad, `${name} ${dtype}: outputs that differ from dequantizeGgml`).toBe(0);
      }
      free(weight);
    });

    it(`${dtype}: a weight split into parts gives the same output as one part`, async () => {
      const [K, N] = [512, 45];
      const m = quantized(type, N, K, 9);
      const whole = uploadGgmlWeight(ctx, m);
      // 16 rows per part: 16 + 16 + 13.
      const split = uploadGgmlWeight(ctx, m, { maxBindingBytes: partBytes(dtype, 16, K) });
      expect(whole.parts.length).toBe(1);
      expect(split.parts.map((p) => p.rows)).toEqual([16, 16, 13]);
      for (const M of [1, 5]) {
        const x = values(M, M * K);
        const a = await outputs(linear(), x, M, whole);
        const b = await outputs(linear(), x, M, split);
        expect(Array.from(b), `${dtype} M = ${M}`).toEqual(Array.from(a));
        expectClose(b, reference(x, M, m), `${dtype} split, M = ${M}`);
      }
      free(whole);
      free(split);
    });

    it(`${dtype}: a row alone and inside a batch`, async () => {
      const [M, K, N] = [17, 512, 19];
      const m = quantized(type, N, K, 11);
      const x = values(12, M * K);
      const weight = uploadGgmlWeight(ctx, m);
      const row = 6;
      const alone = x.slice(row * K, (row + 1) * K);
      const pick = (out: Float32Array) => Array.from(out.subarray(row * N, (row + 1) * N));
      // Each kernel sums a row in an order that does not depend on the other rows: exactly equal.
      for (const [name, run] of [
        ['reduce', perPart(new GgmlMatvecOp(ctx, { kernel: 'reduce' }))],
        ['rows', perPart(new GgmlMatvecOp(ctx, { kernel: 'rows' }))],
        ['matmul', perPart(new GgmlMatmulOp(ctx))],
      ] as const) {
        const batch = await outputs(run, x, M, weight);
        expect(Array.from(await outputs(run, alone, 1, weight)), `${name} ${dtype}`).toEqual(pick(batch));
      }
      // LinearOp: decode takes matvec, a batch the tiled product; they sum in different orders.
      const batch = await outputs(linear(), x, M, weight);
      const single = await outputs(linear(), alone, 1, weight);
      const ref = reference(alone, 1, m);
      expectClose(single, ref, `${dtype} alone`);
      expectClose(new Float32Array(pick(batch)), ref, `${dtype} in a batch`);
      free(weight);
    });
  }

  it('K = 0 gives zeros and N = 0 dispatches nothing', async () => {
    for (const [type, dtype] of FORMATS) {
      for (const M of [1, 3]) {
        const empty = uploadGgmlWeight(ctx, { type, rows: 4, cols: 0, bytes: new Uint8Array(0) });
        expect(Array.from(await outputs(linear(), new Float32Array(0), M, empty)), dtype).toEqual(new Array(4 * M).fill(0));
        free(empty);
        const none = uploadGgmlWeight(ctx, { type, rows: 0, cols: 256, bytes: new Uint8Array(0) });
        expect((await outputs(linear(), values(1, M * 256), M, none)).length).toBe(0);
        free(none);
      }
    }
  });

  it('invalid input gives named errors', async () => {
    const m = quantized(GGML_TYPE.Q4_K, 4, 256, 1);
    const weight = uploadGgmlWeight(ctx, m);
    const w = weight.parts[0]!.tensor;
    const out = ctx.tensor([1, 4], 'f32', undefined, 'out');
    const encoder = ctx.encoder();
    // x of the wrong K, for every path.
    const wrongK = ctx.tensor([1, 512], 'f32', undefined, 'x');
    await expectCode('ERR_SHAPE_MISMATCH', () => new GgmlMatvecOp(ctx).run(encoder, wrongK, w, out));
    await expectCode('ERR_SHAPE_MISMATCH', () => new GgmlMatmulOp(ctx).run(encoder, wrongK, w, out));
    await expectCode('ERR_SHAPE_MISMATCH', () => new LinearOp(ctx).run(encoder, wrongK, weight, out));
    // A GGML weight in the other kernels, another weight in the GGML ones.
    const x = ctx.tensor([1, 256], 'f32', undefined, 'x');
    await expectCode('ERR_DTYPE_UNSUPPORTED', () => new MatvecOp(ctx).run(encoder, x, w, out));
    const f32 = uploadWeight(ctx, new Float32Array(4 * 256), [4, 256], 'f32');
    await expectCode('ERR_DTYPE_UNSUPPORTED', () => new GgmlMatvecOp(ctx).run(encoder, x, f32.parts[0]!.tensor, out));
    await expectCode('ERR_DTYPE_UNSUPPORTED', () => new GgmlLinearOp(ctx).run(encoder, x, f32.parts[0]!.tensor, out));
    // Parts of another dtype than the weight's.
    const mixed: GpuWeight = { ...weight, parts: [{ ...weight.parts[0]!, tensor: f32.parts[0]!.tensor }] };
    await expectCode('ERR_INVALID_ARGUMENT', () => new LinearOp(ctx).run(encoder, x, mixed, out));
    // A meta plane missing.
    const bare: GpuTensor = { ...w, scales: undefined };
    await expectCode('ERR_INVALID_ARGUMENT', () => new GgmlMatvecOp(ctx).run(encoder, x, bare, out));
    // Uploads: a type without kernels, rows of partial blocks, the wrong byte count, a row past the limit,
    // and GGML dtypes from f32 values.
    await expectCode('ERR_DTYPE_UNSUPPORTED', () => uploadGgmlWeight(ctx, { type: GGML_TYPE.F16, rows: 1, cols: 2, bytes: new Uint8Array(4) }));
    await expectCode('ERR_SHAPE_MISMATCH', () => uploadGgmlWeight(ctx, { type: GGML_TYPE.Q4_K, rows: 1, cols: 128, bytes: new Uint8Array(72) }));
    await expectCode('ERR_SHAPE_MISMATCH', () => uploadGgmlWeight(ctx, { ...m, bytes: m.bytes.subarray(1) }));
    await expectCode('ERR_GPU_LIMIT', () => uploadGgmlWeight(ctx, m, { maxBindingBytes: 64 }));
    await expectCode('ERR_DTYPE_UNSUPPORTED', () => uploadWeight(ctx, new Float32Array(256), [1, 256], 'q4_k'));
    ctx.submit(encoder);
    for (const t of [out, wrongK, x]) t.buffer.destroy();
    free(weight);
    free(f32);
  });
});
