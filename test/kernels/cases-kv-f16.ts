// The f16 KV cache: append rounds to f16 exactly as f32ToF16 does (ties to even, subnormals,
// overflow), and attention over it equals the f64 reference on the f16-rounded keys and values.
import { AttentionOp } from '../../kernels/attention.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { attentionRef } from '../../kernels/cpu/attention.ts';
import { KvCache, kvCacheBytes } from '../../kernels/kv-cache.ts';
import { packF16, roundF16Array } from '../../kernels/quant.ts';
import { TOL, all, allclose, expectCode, randomFloats, submit, type CaseOutcome, type KernelCase } from './check.ts';
import { prefillAndDecode } from './attention-steps.ts';

interface Combo {
  heads: number;
  kvHeads: number;
  headDim: number;
  tokens: number;
  startPos: number;
  workgroupSize?: number;
  scale?: number;
  window?: number;
  softcap?: number;
}

/** K and V span [-4, 4): f16's spacing there (up to 2^-9) moves results well past the f32 tolerance. */
const SPAN = 4;

/** The cache rows written for `rows` tokens of [T, kvHeads, headDim] at positions 0.., as packed words. */
function expectedWords(values: Float32Array, kvHeads: number, headDim: number, maxSeq: number): Uint32Array {
  const padded = headDim + (headDim & 1);
  const layout = new Float32Array(kvHeads * maxSeq * padded);
  const tokens = values.length / (kvHeads * headDim);
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < kvHeads; h++) {
      const src = (t * kvHeads + h) * headDim;
      layout.set(values.subarray(src, src + headDim), (h * maxSeq + t) * padded);
    }
  }
  return packF16(layout);
}

function sameWords(got: Uint32Array, want: Uint32Array): CaseOutcome {
  if (got.length !== want.length) return { ok: false, detail: `${got.length} words, want ${want.length}` };
  const i = want.findIndex((w, j) => got[j] !== w);
  if (i >= 0) return { ok: false, detail: `word ${i}: 0x${got[i]!.toString(16)}, want 0x${want[i]!.toString(16)}` };
  return { ok: true, detail: `${want.length} words equal` };
}

/**
 * Caches startPos tokens in two appends (two submits), appends T more, attends with the T newest
 * queries; compares with the reference on rounded k, v and with an f32 cache given the rounded values.
 */
async function checkCombo(ctx: GpuContext, c: Combo, seed: number): Promise<CaseOutcome & { moved: number }> {
  const n = c.startPos + c.tokens;
  const rowLen = c.kvHeads * c.headDim;
  const k = randomFloats(seed, n * rowLen, -SPAN, SPAN);
  const v = randomFloats(seed + 1, n * rowLen, -SPAN, SPAN);
  const q = randomFloats(seed + 2, c.tokens * c.heads * c.headDim);
  const [k16, v16] = [roundF16Array(k), roundF16Array(v)];
  const op = new AttentionOp(ctx, { headDim: c.headDim, workgroupSize: c.workgroupSize });
  const dims = { kvHeads: c.kvHeads, headDim: c.headDim, maxSeq: n + 3 };
  const half = new KvCache(ctx, { ...dims, dtype: 'f16' });
  const wide = new KvCache(ctx, dims);
  const rows = (from: number, to: number, data: Float32Array) =>
    ctx.tensor([to - from, c.kvHeads, c.headDim], 'f32', data.subarray(from * rowLen, to * rowLen));
  const options = { scale: c.scale, window: c.window, softcap: c.softcap };
  const mid = c.startPos >> 1;
  const got = ctx.tensor([c.tokens, c.heads, c.headDim], 'f32');
  const pre = ctx.tensor([c.tokens, c.heads, c.headDim], 'f32');
  submit(ctx, (e) => half.append(e, rows(0, mid, k), rows(0, mid, v)));
  submit(ctx, (e) => {
    half.append(e, rows(mid, c.startPos, k), rows(mid, c.startPos, v));
    half.append(e, rows(c.startPos, n, k), rows(c.startPos, n, v));
    op.run(e, ctx.tensor([c.tokens, c.heads, c.headDim], 'f32', q), half, got, options);
    wide.append(e, rows(0, n, k16), rows(0, n, v16));
    op.run(e, ctx.tensor([c.tokens, c.heads, c.headDim], 'f32', q), wide, pre, options);
  });
  const out = await ctx.read(got) as Float32Array;
  const want = attentionRef(q, k16, v16, { ...c, ...options });
  const unrounded = attentionRef(q, k, v, { ...c, ...options });
  const moved = Math.max(...want.map((w, i) => Math.abs(w - unrounded[i]!)));
  const outcome = all([
    allclose(out, want, TOL.f32.atol, TOL.f32.rtol),
    // The same values summed in the same order: only an adapter's contraction into FMAs may differ.
    allclose(out, await ctx.read(pre) as Float32Array, 1e-6, 1e-6),
    sameWords(await ctx.read(half.k) as Uint32Array, expectedWords(k, c.kvHeads, c.headDim, n + 3)),
    sameWords(await ctx.read(half.v) as Uint32Array, expectedWords(v, c.kvHeads, c.headDim, n + 3)),
  ]);
  half.destroy();
  wide.destroy();
  op.destroy();
  const label = `h${c.heads}/kv${c.kvHeads}/d${c.headDim} T${c.tokens}@${c.startPos}${c.window ? ` window ${c.window}` : ''}${c.softcap ? ` cap ${c.softcap}` : ''}`;
  return { ok: outcome.ok, detail: `${label}: ${outcome.detail}`, moved };
}

async function checkCombos(ctx: GpuContext, combos: Combo[], seed: number): Promise<CaseOutcome> {
  const outcomes = [];
  for (const [i, c] of combos.entries()) outcomes.push(await checkCombo(ctx, c, seed + 10 * i));
  const moved = Math.max(...outcomes.map((o) => o.moved));
  // Rounding must matter at the tolerance used, or the comparison could not tell f16 from f32.
  const discerning = { ok: moved > 5 * TOL.f32.atol, detail: `rounding moves the reference by up to ${moved.toExponential(2)}` };
  return all([...outcomes, discerning]);
}

export const CASES: KernelCase[] = [
  {
    name: 'kv f16: prefill and decode vs reference on rounded k, v (GQA, MHA, MQA, odd headDim, appends across submits)',
    async run(ctx) {
      return checkCombos(ctx, [
        { heads: 1, kvHeads: 1, headDim: 64, tokens: 2, startPos: 0 },
        { heads: 8, kvHeads: 2, headDim: 64, tokens: 17, startPos: 30 },
        { heads: 4, kvHeads: 1, headDim: 128, tokens: 9, startPos: 100 },
        { heads: 6, kvHeads: 3, headDim: 80, tokens: 4, startPos: 61 },
        { heads: 2, kvHeads: 2, headDim: 16, tokens: 33, startPos: 0, workgroupSize: 128 },
        { heads: 3, kvHeads: 1, headDim: 5, tokens: 6, startPos: 9 },
        { heads: 2, kvHeads: 2, headDim: 33, tokens: 1, startPos: 200, workgroupSize: 32 },
        { heads: 2, kvHeads: 1, headDim: 1, tokens: 3, startPos: 4 },
        { heads: 8, kvHeads: 2, headDim: 128, tokens: 1, startPos: 999 },
        { heads: 4, kvHeads: 2, headDim: 64, tokens: 1, startPos: 300, scale: 0.3 },
      ], 5100);
    },
  },
  {
    name: 'kv f16: sliding windows and soft-capped scores, prefill and decode split over keys',
    async run(ctx) {
      return checkCombos(ctx, [
        { heads: 4, kvHeads: 2, headDim: 64, tokens: 17, startPos: 30, window: 5 },
        { heads: 2, kvHeads: 1, headDim: 32, tokens: 9, startPos: 0, window: 1 },
        { heads: 8, kvHeads: 2, headDim: 128, tokens: 1, startPos: 999, window: 40 },
        { heads: 4, kvHeads: 2, headDim: 64, tokens: 1, startPos: 700, window: 300, workgroupSize: 32 },
        { heads: 4, kvHeads: 2, headDim: 64, tokens: 9, startPos: 20, softcap: 0.5, scale: 2 },
        { heads: 8, kvHeads: 4, headDim: 128, tokens: 1, startPos: 600, window: 100, softcap: 1, scale: 1 },
      ], 5300);
    },
  },
  {
    name: 'kv f16: decoding one token at a time matches the all-at-once prefill',
    async run(ctx) {
      const [heads, kvHeads, headDim, n] = [4, 2, 48, 90];
      const rowLen = kvHeads * headDim;
      const qLen = heads * headDim;
      const k = randomFloats(5400, n * rowLen, -SPAN, SPAN);
      const v = randomFloats(5401, n * rowLen, -SPAN, SPAN);
      const q = randomFloats(5402, n * qLen);
      const run = await prefillAndDecode(ctx, { heads, kvHeads, headDim, n }, k, v, q, 'f16');
      const want = attentionRef(q, roundF16Array(k), roundF16Array(v), { tokens: n, heads, kvHeads, headDim, startPos: 0 });
      const outcome = all([
        allclose(run.decoded, run.prefill, TOL.f32.atol, TOL.f32.rtol),
        allclose(run.decoded, want, TOL.f32.atol, TOL.f32.rtol),
        sameWords(await ctx.read(run.stepwise.k) as Uint32Array, await ctx.read(run.whole.k) as Uint32Array),
      ]);
      run.destroy();
      return outcome;
    },
  },
  {
    name: 'kv f16: append rounds ties to even, subnormals, overflow and NaN as f32ToF16',
    async run(ctx) {
      const ulp = 2 ** -10;
      const specials = [
        1 + ulp / 2, 1 + 3 * ulp / 2, -(1 + ulp / 2), 1 + ulp / 2 + 2 ** -20, 2048 + 1, 2048 + 3,
        2 ** -25, 3 * 2 ** -25, 2 ** -26, 2 ** -24 * 1.5, 2 ** -14 - 2 ** -25, 1e-40, -1e-40,
        65504, 65519, 65520, -65520, 1e6, Infinity, -Infinity, NaN, -0, 0,
      ];
      const headDim = 7;
      const tokens = Math.ceil(specials.length / headDim) + 40;
      // Every magnitude from below f16's subnormals to past its largest value, both signs.
      const signs = randomFloats(5500, tokens * headDim);
      const wide = randomFloats(5501, tokens * headDim, 0, 1).map((u, i) => Math.sign(signs[i]!) * 2 ** (-26 + 44 * u));
      wide.set(specials);
      const cache = new KvCache(ctx, { kvHeads: 1, headDim, maxSeq: tokens, dtype: 'f16' });
      const t = ctx.tensor([tokens, 1, headDim], 'f32', wide);
      submit(ctx, (e) => cache.append(e, t, t));
      const want = expectedWords(wide, 1, headDim, tokens);
      const outcome = all([
        sameWords(await ctx.read(cache.k) as Uint32Array, want),
        sameWords(await ctx.read(cache.v) as Uint32Array, want),
      ]);
      cache.destroy();
      return outcome;
    },
  },
  {
    name: 'kv f16: half the bytes, guards and named errors',
    async run(ctx) {
      const half = new KvCache(ctx, { kvHeads: 4, headDim: 8, maxSeq: 8, dtype: 'f16' });
      const odd = new KvCache(ctx, { kvHeads: 2, headDim: 5, maxSeq: 3, dtype: 'f16' });
      const kv = (t: number, heads = 4, hd = 8) => ctx.tensor([t, heads, hd], 'f32');
      submit(ctx, (e) => half.append(e, kv(5), kv(5)));
      const outcome = all([
        { ok: half.bytes === 2 * 4 * 8 * 8 * 2 && half.bytes === kvCacheBytes({ kvHeads: 4, headDim: 8, maxSeq: 8, dtype: 'f16' }), detail: `bytes ${half.bytes}` },
        { ok: kvCacheBytes({ kvHeads: 4, headDim: 8, maxSeq: 8 }) === 2 * half.bytes, detail: 'f32 takes twice' },
        // An odd headDim pads each row to a whole word.
        { ok: odd.bytes === 2 * 2 * 3 * 3 * 4 && odd.bytes === kvCacheBytes({ kvHeads: 2, headDim: 5, maxSeq: 3, dtype: 'f16' }), detail: `odd bytes ${odd.bytes}` },
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => half.append(e, kv(4), kv(4)))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => half.append(e, ctx.tensor([1, 4, 8], 'f16'), ctx.tensor([1, 4, 8], 'f16')))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => new KvCache(ctx, { kvHeads: 1, headDim: 8, maxSeq: 8, dtype: 'q8' as 'f16' })),
        { ok: half.length === 5, detail: `length ${half.length}` },
      ]);
      half.destroy();
      odd.destroy();
      return outcome;
    },
  },
];
