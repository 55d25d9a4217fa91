// The CPU backend's linear over GGML-quantized weights: the WebAssembly SIMD kernels bit for bit
// against ggmlLinearRef, the reference against an f64 product of the dequantized weights, rows alone
// and in batches, any thread count, memory reuse, and shape errors.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GgmlCpuRuntime } from '../client/model/backend/ggml-linear.ts';
import { ggmlLinearRef } from '../kernels/cpu/ggml-linear.ts';
import { GGML_TYPE, dequantizeGgml, type GgmlBlocks, type GgmlType } from '../kernels/ggml-quants.ts';
import { AigridError } from '../protocol/errors.ts';
import { quantizeGgml } from './fixtures/ggml-quantize.ts';
import { mulberry32 } from './helpers/random.ts';

const FORMATS: [string, GgmlType][] = [['Q8_0', GGML_TYPE.Q8_0], ['Q4_0', GGML_TYPE.Q4_0], ['Q5_0', GGML_TYPE.Q5_0], ['Q4_K', GGML_TYPE.Q4_K], ['Q6_K', GGML_TYPE.Q6_K]];
const BATCHES = [1, 2, 3, 4, 5, 9];

function randomArray(rand: () => number, n: number, lo = -1, hi = 1): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
}

function quantized(type: GgmlType, values: Float32Array, rows: number, cols: number): GgmlBlocks {
  return { type, rows, cols, bytes: quantizeGgml(type, values) };
}

/** Largest |ref - exact| over sum |x w|, the exact product in f64 from the dequantized weights. */
function relativeError(x: Float32Array, w: GgmlBlocks, M: number, got: Float32Array): number {
  const { rows: N, cols: K } = w;
  const values = dequantizeGgml(w.type, w.bytes, N * K);
  let worst = 0;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = 0, scale = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k]! * values[n * K + k]!;
        sum += p;
        scale += Math.abs(p);
      }
      worst = Math.max(worst, Math.abs(got[m * N + n]! - sum) / (scale || 1));
    }
  }
  return worst;
}

/** Rows [from, from + count) of x [·, K]. */
const rowsOf = (x: Float32Array, K: number, from: number, count: number) => x.subarray(from * K, (from + count) * K);

function expectShapeError(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AigridError);
    expect((err as AigridError).code).toBe('ERR_SHAPE_MISMATCH');
    return;
  }
  expect.fail('expected ERR_SHAPE_MISMATCH');
}

describe('cpu ggml linear', () => {
  let single: GgmlCpuRuntime;
  beforeAll(async () => {
    single = await GgmlCpuRuntime.create({ threads: 1 });
  });
  afterAll(() => single.destroy());

  it('has the SIMD kernels in Node', () => {
    expect(single.simd).toBe(true);
    expect(single.threads).toBe(1);
  });

  for (const [name, type] of FORMATS) {
    it(`${name}: the kernels equal ggmlLinearRef bit for bit, alone and in batches`, () => {
      const rand = mulberry32(type * 101 + 7);
      for (const K of [256, 512, 2048]) {
        for (const N of [7, 12]) {
          const w = quantized(type, randomArray(rand, N * K), N, K);
          // For K = 512, activations from 2^-20 to 2^20 (the kernels scale products by powers of two).
          const x = K === 512 ? Float32Array.from({ length: 9 * K }, () => (rand() * 2 - 1) * 2 ** Math.floor(rand() * 41 - 20)) : randomArray(rand, 9 * K);
          const linear = single.place(w);
          const alone = Array.from({ length: 9 }, (_, m) => linear.forward(rowsOf(x, K, m, 1), 1));
          for (const M of BATCHES) {
            const want = ggmlLinearRef(rowsOf(x, K, 0, M), w, M);
            const got = linear.forward(rowsOf(x, K, 0, M), M);
            expect(got, `${name} [${M}, ${K}] x [${N}, ${K}]`).toEqual(want);
            for (let m = 0; m < M; m++) expect(got.subarray(m * N, (m + 1) * N), `row ${m} of ${M}`).toEqual(alone[m]);
          }
          linear.destroy();
        }
      }
    });

    it(`${name}: ggmlLinearRef is within 1e-5 of the f64 product of the dequantized weights`, () => {
      const rand = mulberry32(type * 31 + 3);
      const K = 2048, N = 5, M = 3;
      // Centred weights, and weights far from zero (a large Q4_K min against small steps).
      for (const [lo, hi] of [[-1, 1], [0.9, 1]] as const) {
        const w = quantized(type, randomArray(rand, N * K, lo, hi), N, K);
        const x = randomArray(rand, M * K);
        expect(relativeError(x, w, M, ggmlLinearRef(x, w, M)), `${name} weights in [${lo}, ${hi}]`).toBeLessThan(1e-5);
      }
    });
  }

  it('threads 1, 2 and 3 give the same bits', async () => {
    const rand = mulberry32(5);
    const runtimes = await Promise.all([1, 2, 3].map((threads) => GgmlCpuRuntime.create({ threads, parallelThreshold: 0 })));
    try {
      expect(runtimes.map((r) => r.threads)).toEqual([1, 2, 3]);
      // Fewer rows than threads; a few rows each; and, with five rows of x, several cache tiles per thread.
      const cases: [string, GgmlType, number, number, number[]][] = [
        ...FORMATS.map(([name, type]): [string, GgmlType, number, number, number[]] => [name, type, 512, 37, [1, 5]]),
        ['Q8_0', GGML_TYPE.Q8_0, 256, 2, [1, 3]],
        ['Q4_K', GGML_TYPE.Q4_K, 2048, 300, [5]],
      ];
      for (const [name, type, K, N, batches] of cases) {
        const w = quantized(type, randomArray(rand, N * K), N, K);
        for (const M of batches) {
          const x = randomArray(rand, M * K);
          const want = ggmlLinearRef(x, w, M);
          for (const runtime of runtimes) {
            const linear = runtime.place(w);
            expect(linear.forward(x, M), `${name} [${M}, ${K}] x [${N}, ${K}] on ${runtime.threads} threads`).toEqual(want);
            linear.destroy();
          }
        }
      }
    } finally {
      for (const r of runtimes) r.destroy();
    }
  });

  it('frees a weight on destroy and reuses its memory', () => {
    const rand = mulberry32(9);
    const K = 256, N = 64;
    const w = quantized(GGML_TYPE.Q8_0, randomArray(rand, N * K), N, K);
    const before = single.bytesInUse;
    const first = single.place(w);
    expect(single.bytesInUse).toBeGreaterThanOrEqual(before + (N * K * 36) / 32);
    first.destroy();
    first.destroy(); // a second destroy does nothing
    expect(single.bytesInUse).toBe(before);
    const second = single.place(w);
    expect(second.addr).toBe(first.addr);
    expect(() => first.forward(new Float32Array(K), 1)).toThrow(AigridError);
    second.destroy();
  });

  it('rejects invalid shapes and unsupported types', () => {
    const rand = mulberry32(13);
    const K = 256, N = 3;
    const w = quantized(GGML_TYPE.Q4_0, randomArray(rand, N * K), N, K);
    const linear = single.place(w);
    expectShapeError(() => linear.forward(new Float32Array(K + 1), 1));
    expectShapeError(() => linear.forward(new Float32Array(2 * K), 1));
    expectShapeError(() => ggmlLinearRef(new Float32Array(K - 1), w, 1));
    expectShapeError(() => single.place({ ...w, rows: N + 1 })); // bytes for 3 rows, not 4
    expectShapeError(() => single.place({ ...w, cols: K - 16 })); // not whole blocks
    expectShapeError(() => single.place({ type: GGML_TYPE.Q4_K, rows: 1, cols: 128, bytes: new Uint8Array(72) }));
    expect(() => single.place({ type: GGML_TYPE.F32, rows: 1, cols: 4, bytes: new Uint8Array(16) })).toThrow(/no kernel/);
    expect(linear.forward(new Float32Array(0), 0)).toEqual(new Float32Array(0));
    linear.destroy();
  });

  it('falls back to ggmlLinearRef without SIMD', async () => {
    const runtime = await GgmlCpuRuntime.create({ simd: false, threads: 2 });
    expect(runtime.simd).toBe(false);
    expect(runtime.threads).toBe(1);
    const rand = mulberry32(17);
    const K = 256, N = 5, M = 2;
    const w = quantized(GGML_TYPE.Q6_K, randomArray(rand, N * K), N, K);
    const x = randomArray(rand, M * K);
    const linear = runtime.place(w);
    expect(linear.addr).toBe(0);
    expect(linear.forward(x, M)).toEqual(ggmlLinearRef(x, w, M));
    runtime.destroy();
  });

  it('workers do not keep Node running', () => {
    // A process that starts two workers and never destroys them must still exit.
    const script = `
      const { GgmlCpuRuntime } = await import('./client/model/backend/ggml-linear.ts');
      const runtime = await GgmlCpuRuntime.create({ threads: 3, parallelThreshold: 0 });
      const bytes = new Uint8Array(34 * 8 * 4);
      const linear = runtime.place({ type: 8, rows: 4, cols: 256, bytes });
      console.log(runtime.threads, linear.forward(new Float32Array(256), 1).length);`;
    const out = execFileSync(process.execPath, ['--import', './bin/register.js', '--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
    expect(out.trim()).toBe('3 4');
  });
});
