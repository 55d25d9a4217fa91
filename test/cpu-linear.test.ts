// The CPU backend's fast linear (WebAssembly SIMD and blocked JS) and attention against the plain
// references, the kernels' weight layout read back as rows, and the growing KV store.
import { describe, expect, it } from 'vitest';
import { attentionRef } from '../kernels/cpu/attention.ts';
import { linearRef } from '../kernels/cpu/matmul.ts';
import { attentionFast } from '../client/model/backend/cpu-attention.ts';
import { CpuBackend, CpuKvStore } from '../client/model/backend/cpu.ts';
import { gatherRows, linearBlocked, linearFast, placeWeight, releaseWeight, simdLinearAvailable } from '../client/model/backend/cpu-linear.ts';
import { embeddingRef } from '../kernels/cpu/embedding.ts';
import { mulberry32 } from './helpers/random.ts';

function randomArray(rand: () => number, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rand() * 2 - 1);
}

/** Largest |a - b| relative to the scale of the sums (sum of |x| |w| bounds each result). */
function maxError(got: Float32Array, want: Float32Array, K: number): number {
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!) / Math.max(1, Math.sqrt(K)));
  return err;
}

// Row counts around the 4-row blocks, K with and without a multiple of 4, N around the 2- and 4-wide
// column blocks and beyond one cache tile.
const SHAPES: [number, number, number][] = [
  [1, 4, 1], [1, 64, 128], [1, 576, 1536], [1, 13, 7], [1, 7, 13],
  [2, 64, 65], [3, 96, 33], [4, 64, 128], [5, 33, 17], [6, 128, 130], [7, 576, 301], [8, 576, 1536],
  [8, 1536, 576], [9, 100, 99], [11, 3, 5], [16, 64, 250], [0, 8, 8],
];

describe('cpu linear', () => {
  it('has the SIMD kernels in Node', () => {
    expect(simdLinearAvailable()).toBe(true);
  });

  it('blocked JS equals linearRef bit for bit', () => {
    const rand = mulberry32(7);
    for (const [M, K, N] of SHAPES) {
      const x = randomArray(rand, M * K);
      const w = randomArray(rand, N * K);
      expect(linearBlocked(x, M, K, w, N), `[${M}, ${K}] x [${N}, ${K}]`).toEqual(linearRef(x, M, K, w, N));
    }
  });

  it('SIMD equals linearRef within f32 rounding', () => {
    const rand = mulberry32(11);
    for (const [M, K, N] of SHAPES) {
      const x = randomArray(rand, M * K);
      const values = randomArray(rand, N * K);
      const w = placeWeight(values.slice(), N, K);
      expect(w.addr !== 0, `[${N}, ${K}] placed in the SIMD heap`).toBe(K % 4 === 0 && N > 0);
      const got = linearFast(x, M, K, w, N);
      const want = linearRef(x, M, K, values, N);
      expect(got.length).toBe(want.length);
      expect(maxError(got, want, K), `[${M}, ${K}] x [${N}, ${K}]`).toBeLessThan(2e-6);
      releaseWeight(w);
    }
  });

  it('seeded random shapes: SIMD and JS paths agree with linearRef', () => {
    const rand = mulberry32(2024);
    for (let trial = 0; trial < 60; trial++) {
      const M = 1 + Math.floor(rand() * 13);
      const K = 1 + Math.floor(rand() * 300);
      const N = 1 + Math.floor(rand() * 300);
      const x = randomArray(rand, M * K);
      const values = randomArray(rand, N * K);
      const want = linearRef(x, M, K, values, N);
      const simd = placeWeight(values.slice(), N, K);
      const js = placeWeight(values.slice(), N, K, { simd: false });
      expect(js.addr).toBe(0);
      expect(maxError(linearFast(x, M, K, simd, N), want, K), `[${M}, ${K}] x [${N}, ${K}]`).toBeLessThan(2e-6);
      expect(linearFast(x, M, K, js, N)).toEqual(want);
      releaseWeight(simd);
    }
  });

  it('gives each row the same bits alone as in a batch of any size', () => {
    const rand = mulberry32(13);
    for (const [K, N] of [[64, 130], [576, 61], [12, 7]] as const) {
      const values = randomArray(rand, N * K);
      const w = placeWeight(values, N, K);
      const x = randomArray(rand, 11 * K);
      const alone = Array.from({ length: 11 }, (_, m) => linearFast(x.subarray(m * K, (m + 1) * K), 1, K, w, N));
      for (const M of [2, 3, 4, 5, 8, 11]) {
        const batch = linearFast(x.subarray(0, M * K), M, K, w, N);
        for (let m = 0; m < M; m++) expect(batch.subarray(m * N, (m + 1) * N), `row ${m} of ${M}, [${N}, ${K}]`).toEqual(alone[m]);
      }
      releaseWeight(w);
    }
  });

  it('reads rows of a placed weight back in their order (tied embeddings)', async () => {
    const rand = mulberry32(17);
    for (const [N, K] of [[9, 8], [10, 64], [1, 4]] as const) {
      const values = randomArray(rand, N * K);
      const ids = Uint32Array.from([N - 1, 0, N + 3, Math.floor(N / 2), N - 1]);
      const want = embeddingRef(ids, values, N, K);
      const placed = placeWeight(values.slice(), N, K);
      expect(placed.addr).not.toBe(0);
      expect(gatherRows(placed, N, K, ids)).toEqual(want);
      expect(gatherRows(placeWeight(values.slice(), N, K, { simd: false }), N, K, ids)).toEqual(want);
      // Through the backend: a weight shared as a table.
      const backend = new CpuBackend();
      const w = backend.weight(values.slice(), [N, K], 'f32', 'tied');
      const table = backend.tableOf(w)!;
      expect(await backend.run((ops) => ops.embedding(ops.indices(ids), table))).toEqual(want);
      releaseWeight(placed);
    }
  });

  it('freed blocks are reused, and weights placed later are intact', () => {
    const rand = mulberry32(3);
    const K = 64;
    const N = 256;
    const keep = randomArray(rand, N * K);
    const kept = placeWeight(keep.slice(), N, K);
    const addrs = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const w = placeWeight(randomArray(rand, N * K), N, K);
      addrs.add(w.addr);
      releaseWeight(w);
    }
    expect(addrs.size).toBe(1);
    const x = randomArray(rand, 3 * K);
    expect(maxError(linearFast(x, 3, K, kept, N), linearRef(x, 3, K, keep, N), K)).toBeLessThan(2e-6);
    releaseWeight(kept);
  });

  it('the backend computes linear through it, with bias, and refuses a disposed weight', async () => {
    const rand = mulberry32(5);
    const backend = new CpuBackend();
    const [M, K, N] = [6, 64, 40];
    const values = randomArray(rand, N * K);
    const bias = randomArray(rand, N);
    const x = randomArray(rand, M * K);
    const w = backend.weight(values, [N, K], 'f32', 'w');
    const b = backend.constant(bias, [N], 'b');
    const got = await backend.run((ops) => ops.linear(ops.input(x, [M, K]), w, b));
    const want = linearRef(x, M, K, values, N).map((v, i) => v + bias[i % N]!);
    expect(maxError(got, want, K)).toBeLessThan(2e-6);
    backend.dispose(w);
    expect(() => backend.run((ops) => ops.linear(ops.input(x, [M, K]), w))).toThrow(/after dispose/);
  });
});

describe('cpu attention', () => {
  it('equals attentionRef bit for bit', () => {
    const rand = mulberry32(21);
    for (const [tokens, heads, kvHeads, headDim, startPos] of [[1, 9, 3, 64, 20], [1, 4, 4, 16, 0], [5, 4, 2, 8, 3], [16, 9, 3, 64, 0], [2, 6, 1, 32, 300]] as const) {
      const n = startPos + tokens;
      const q = randomArray(rand, tokens * heads * headDim);
      const k = randomArray(rand, n * kvHeads * headDim);
      const v = randomArray(rand, n * kvHeads * headDim);
      const dims = { tokens, heads, kvHeads, headDim, startPos };
      expect(attentionFast(q, k, v, dims)).toEqual(attentionRef(q, k, v, dims));
      expect(attentionFast(q, k, v, { ...dims, scale: 0.3 })).toEqual(attentionRef(q, k, v, { ...dims, scale: 0.3 }));
      for (const window of [1, 2, 7]) expect(attentionFast(q, k, v, { ...dims, window })).toEqual(attentionRef(q, k, v, { ...dims, window }));
      expect(attentionFast(q, k, v, { ...dims, softcap: 0.2, scale: 3 })).toEqual(attentionRef(q, k, v, { ...dims, softcap: 0.2, scale: 3 }));
    }
    // The window is the last `window` keys: with one key the output is that key's value row.
    const [q, k, v] = [randomArray(rand, 4 * 8), randomArray(rand, 4 * 8), randomArray(rand, 4 * 8)];
    const out = attentionRef(q, k, v, { tokens: 4, heads: 1, kvHeads: 1, headDim: 8, startPos: 0, window: 1 });
    for (let t = 0; t < 4; t++) for (let d = 0; d < 8; d++) expect(out[t * 8 + d]).toBeCloseTo(v[t * 8 + d]!, 6);
  });
});

describe('cpu kv store', () => {
  it('grows as tokens come, keeping what it held, and stops at maxSeq', () => {
    const rand = mulberry32(5);
    const store = new CpuKvStore({ kvHeads: 2, headDim: 4, maxSeq: 150 });
    expect(store.bytes).toBe(0);
    const k = randomArray(rand, 150 * 8);
    const v = randomArray(rand, 150 * 8);
    // One token, then a prefill-sized chunk, then single tokens across two growths.
    store.append(k.subarray(0, 8), v.subarray(0, 8));
    store.append(k.subarray(8, 70 * 8), v.subarray(8, 70 * 8));
    for (let t = 70; t < 140; t++) store.append(k.subarray(t * 8, (t + 1) * 8), v.subarray(t * 8, (t + 1) * 8));
    expect(store.length).toBe(140);
    expect(store.k).toEqual(k.subarray(0, 140 * 8));
    expect(store.v).toEqual(v.subarray(0, 140 * 8));
    expect(store.bytes).toBe(2 * 150 * 8 * 4); // capped at maxSeq
    store.truncate(100);
    expect(store.k).toEqual(k.subarray(0, 100 * 8));
    store.append(k.subarray(0, 50 * 8), v.subarray(0, 50 * 8));
    expect(store.k.subarray(100 * 8)).toEqual(k.subarray(0, 50 * 8));
    expect(() => store.append(k.subarray(0, 8), v.subarray(0, 8))).toThrow(/exceeds 150/);
    expect(store.length).toBe(150);
  });
});
