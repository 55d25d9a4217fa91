// Rope with the KV append in one dispatch (kernels/rope-append.ts) from a fused projection's qkv:
// rotated q and the cache rows against the CPU rope reference (and v as given), and bit for bit
// against the separate GPU passes (rope of q and k, then the cache's own append) on f32 and f16
// caches, at a cache that already holds tokens, with llama3 rope scaling; and with per-head q/k
// RMSNorms first (Qwen3, Gemma 3) against the CPU norm then rope.
import { rmsNormRef } from '../../kernels/cpu/norm.ts';
import { ropeRef, type RopeScaling } from '../../kernels/cpu/rope.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { KvCache } from '../../kernels/kv-cache.ts';
import { RopeAppendOp } from '../../kernels/rope-append.ts';
import { RopeOp } from '../../kernels/rope.ts';
import { roundF16Array } from '../../kernels/quant.ts';
import { all, allclose, expectCode, randomFloats, submit, type CaseOutcome, type KernelCase } from './check.ts';

const ROPE_TOL = { atol: 1e-5, rtol: 1e-5 };
const LLAMA3: RopeScaling = { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 };

interface Combo {
  tokens: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** Tokens the cache holds before. */
  start: number;
  theta: number;
  scaling?: RopeScaling;
}

const COMBOS: Combo[] = [
  { tokens: 1, heads: 4, kvHeads: 2, headDim: 8, start: 3, theta: 10_000 },
  { tokens: 5, heads: 6, kvHeads: 2, headDim: 16, start: 0, theta: 100_000 },
  { tokens: 3, heads: 9, kvHeads: 3, headDim: 64, start: 10, theta: 500_000, scaling: LLAMA3 },
  { tokens: 1, heads: 8, kvHeads: 8, headDim: 6, start: 40, theta: 10_000 },
];

/** Columns [from, from + width) of each row of a [rows, cols] matrix. */
function columns(x: Float32Array, cols: number, from: number, width: number): Float32Array {
  const rows = x.length / cols;
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * cols + from, r * cols + from + width), r * width);
  return out;
}

/** Rows start.. of a [kvHeads, maxSeq, d] cache, as [T, kvHeads, d] (the order they were appended in). */
function cachedRows(cache: Float32Array, c: Combo, maxSeq: number): Float32Array {
  const { tokens, kvHeads, headDim: d, start } = c;
  const out = new Float32Array(tokens * kvHeads * d);
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < kvHeads; h++) out.set(cache.subarray((h * maxSeq + start + t) * d, (h * maxSeq + start + t + 1) * d), (t * kvHeads + h) * d);
  }
  return out;
}

const sameWords = (a: ArrayLike<number>, b: ArrayLike<number>, what: string): CaseOutcome => {
  const x = new Uint32Array(Float32Array.from(a).buffer);
  const y = new Uint32Array(Float32Array.from(b).buffer);
  const at = x.findIndex((v, i) => v !== y[i]);
  return at < 0 && x.length === y.length ? { ok: true, detail: `${what}: bit for bit` } : { ok: false, detail: `${what}: differs at ${at} (${a[at]} vs ${b[at]})` };
};

async function checkCombo(ctx: GpuContext, c: Combo, dtype: 'f32' | 'f16', seed: number): Promise<CaseOutcome> {
  const { tokens: T, heads, kvHeads, headDim: d, start } = c;
  const maxSeq = start + T + 2;
  const width = (heads + 2 * kvHeads) * d;
  const qkv = randomFloats(seed, T * width, -3, 3);
  const positions = Uint32Array.from({ length: T }, (_, t) => start + t);
  const q = columns(qkv, width, 0, heads * d);
  const k = columns(qkv, width, heads * d, kvHeads * d);
  const v = columns(qkv, width, (heads + kvHeads) * d, kvHeads * d);

  // Fused.
  const fusedCache = new KvCache(ctx, { kvHeads, headDim: d, maxSeq, dtype });
  fusedCache.reserve(start);
  const tqkv = ctx.tensor([T, width], 'f32', qkv);
  const tpos = ctx.tensor([T], 'u32', positions);
  const qOut = ctx.tensor([T, heads, d], 'f32');
  submit(ctx, (e) => new RopeAppendOp(ctx).run(e, tqkv, tpos, fusedCache, qOut, { heads, kvHeads, headDim: d }, c.theta, c.scaling));
  // Separate passes on the same values.
  const plainCache = new KvCache(ctx, { kvHeads, headDim: d, maxSeq, dtype });
  plainCache.reserve(start);
  const tq = ctx.tensor([T, heads, d], 'f32', q);
  const tk = ctx.tensor([T, kvHeads, d], 'f32', k);
  const tv = ctx.tensor([T, kvHeads, d], 'f32', v);
  submit(ctx, (e) => {
    const rope = new RopeOp(ctx);
    rope.run(e, tq, tpos, tq, c.theta, c.scaling);
    rope.run(e, tk, tpos, tk, c.theta, c.scaling);
    plainCache.append(e, tk, tv);
  });
  const gotQ = (await ctx.read(qOut)) as Float32Array;
  const words = async (cache: KvCache) => [new Uint32Array((await ctx.read(cache.k)).buffer), new Uint32Array((await ctx.read(cache.v)).buffer)];
  const [fk, fv] = await words(fusedCache);
  const [pk, pv] = await words(plainCache);
  const label = `${dtype} T ${T} heads ${heads}/${kvHeads} d ${d} start ${start}`;
  const outcomes = [
    { ok: fusedCache.length === start + T, detail: `length ${fusedCache.length}` },
    sameWords(gotQ, (await ctx.read(tq)) as Float32Array, `${label} q`),
    sameWords(new Float32Array(fk!.buffer), new Float32Array(pk!.buffer), `${label} k cache`),
    sameWords(new Float32Array(fv!.buffer), new Float32Array(pv!.buffer), `${label} v cache`),
    allclose(gotQ, ropeRef(q, positions, heads, d, c.theta, c.scaling), ROPE_TOL.atol, ROPE_TOL.rtol),
  ];
  if (dtype === 'f32') {
    outcomes.push(allclose(cachedRows(new Float32Array(fk!.buffer), c, maxSeq), ropeRef(k, positions, kvHeads, d, c.theta, c.scaling), ROPE_TOL.atol, ROPE_TOL.rtol));
    outcomes.push(sameWords(cachedRows(new Float32Array(fv!.buffer), c, maxSeq), v, `${label} v as given`));
  } else {
    // Halves: decode the words and compare with the f16-rounded reference.
    const halves = (w: Uint32Array) => Float32Array.from({ length: w.length * 2 }, (_, i) => f16Value((w[i >> 1]! >>> (16 * (i & 1))) & 0xffff));
    outcomes.push(sameWords(cachedRows(halves(fv!), c, maxSeq), roundF16Array(v), `${label} v halves`));
    outcomes.push(allclose(cachedRows(halves(fk!), c, maxSeq), roundF16Array(ropeRef(k, positions, kvHeads, d, c.theta, c.scaling)), 2e-3, 2e-3));
  }
  for (const t of [tqkv, tpos, qOut, tq, tk, tv]) t.buffer.destroy();
  fusedCache.destroy();
  plainCache.destroy();
  const outcome = all(outcomes);
  return { ok: outcome.ok, detail: `${label}: ${outcome.detail}` };
}

const NORM_EPS = 1e-6;

async function checkNormed(ctx: GpuContext, c: Combo, dtype: 'f32' | 'f16', seed: number): Promise<CaseOutcome> {
  const { tokens: T, heads, kvHeads, headDim: d, start } = c;
  const maxSeq = start + T;
  const width = (heads + 2 * kvHeads) * d;
  const qkv = randomFloats(seed, T * width, -3, 3);
  const qw = randomFloats(seed + 1, d, 0.5, 1.5);
  const kw = randomFloats(seed + 2, d, 0.5, 1.5);
  const positions = Uint32Array.from({ length: T }, (_, t) => start + t);
  const cache = new KvCache(ctx, { kvHeads, headDim: d, maxSeq, dtype });
  cache.reserve(start);
  const tensors = [ctx.tensor([T, width], 'f32', qkv), ctx.tensor([T], 'u32', positions), ctx.tensor([T, heads, d], 'f32'), ctx.tensor([d], 'f32', qw), ctx.tensor([d], 'f32', kw)] as const;
  const [tqkv, tpos, qOut, tqw, tkw] = tensors;
  submit(ctx, (e) => new RopeAppendOp(ctx).run(e, tqkv, tpos, cache, qOut, { heads, kvHeads, headDim: d }, c.theta, c.scaling, { q: tqw, k: tkw, eps: NORM_EPS }));
  const wantQ = ropeRef(rmsNormRef(columns(qkv, width, 0, heads * d), qw, NORM_EPS), positions, heads, d, c.theta, c.scaling);
  const wantK = ropeRef(rmsNormRef(columns(qkv, width, heads * d, kvHeads * d), kw, NORM_EPS), positions, kvHeads, d, c.theta, c.scaling);
  const k = await ctx.read(cache.k);
  const gotK = dtype === 'f32' ? (k as Float32Array) : Float32Array.from({ length: k.length * 2 }, (_, i) => f16Value((k[i >> 1]! >>> (16 * (i & 1))) & 0xffff));
  const tol = dtype === 'f32' ? ROPE_TOL : { atol: 2e-3, rtol: 2e-3 };
  const outcome = all([
    allclose((await ctx.read(qOut)) as Float32Array, wantQ, ROPE_TOL.atol, ROPE_TOL.rtol),
    allclose(cachedRows(gotK, c, maxSeq), dtype === 'f32' ? wantK : roundF16Array(wantK), tol.atol, tol.rtol),
  ]);
  for (const t of tensors) t.buffer.destroy();
  cache.destroy();
  return { ok: outcome.ok, detail: `normed ${dtype} T ${T} heads ${heads}/${kvHeads} d ${d}: ${outcome.detail}` };
}

/** The value of f16 bits. */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export const CASES: KernelCase[] = [
  ...(['f32', 'f16'] as const).map(
    (dtype): KernelCase => ({
      name: `rope-append: ${dtype} cache, rope and append of a fused qkv equal the separate passes`,
      async run(ctx) {
        const outcomes = [];
        for (const [i, combo] of COMBOS.entries()) outcomes.push(await checkCombo(ctx, combo, dtype, 900 + i));
        return all(outcomes);
      },
    }),
  ),
  {
    name: 'rope-append: per-head q and k norms before rope (f32 and f16 caches)',
    async run(ctx) {
      const outcomes = [];
      for (const [i, c] of COMBOS.entries()) {
        for (const dtype of ['f32', 'f16'] as const) outcomes.push(await checkNormed(ctx, c, dtype, 950 + i));
      }
      return all(outcomes);
    },
  },
  {
    name: 'rope-append: shapes that do not match the cache, and a full cache, are named errors',
    async run(ctx) {
      const op = new RopeAppendOp(ctx);
      const cache = new KvCache(ctx, { kvHeads: 2, headDim: 8, maxSeq: 4 });
      const shape = { heads: 4, kvHeads: 2, headDim: 8 };
      const qkv = ctx.tensor([1, 64], 'f32');
      const pos = ctx.tensor([1], 'u32');
      const q = ctx.tensor([1, 4, 8], 'f32');
      const outcomes = [
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, ctx.tensor([1, 60], 'f32'), pos, cache, q, shape, 10_000))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, qkv, pos, cache, q, { ...shape, headDim: 16 }, 10_000))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, qkv, pos, cache, q, { ...shape, heads: 3 }, 10_000))),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.run(e, qkv, pos, cache, q, shape, 0))),
      ];
      cache.reserve(4);
      outcomes.push(await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.run(e, qkv, pos, cache, q, shape, 10_000))));
      outcomes.push({ ok: cache.length === 4, detail: `a refused append leaves the length (${cache.length})` });
      cache.destroy();
      return all(outcomes);
    },
  },
];
