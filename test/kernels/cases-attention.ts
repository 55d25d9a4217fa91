import { AttentionOp } from '../../kernels/attention.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { attentionRef } from '../../kernels/cpu/attention.ts';
import { KvCache } from '../../kernels/kv-cache.ts';
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

/** Caches startPos tokens, appends T more, attends with the T newest queries; compares with the f64 reference. */
async function checkCombo(ctx: GpuContext, c: Combo, seed: number): Promise<CaseOutcome> {
  const n = c.startPos + c.tokens;
  const rowLen = c.kvHeads * c.headDim;
  const k = randomFloats(seed, n * rowLen);
  const v = randomFloats(seed + 1, n * rowLen);
  const q = randomFloats(seed + 2, c.tokens * c.heads * c.headDim);
  const op = new AttentionOp(ctx, { headDim: c.headDim, workgroupSize: c.workgroupSize });
  const cache = new KvCache(ctx, { kvHeads: c.kvHeads, headDim: c.headDim, maxSeq: n + 3 });
  const rows = (from: number, to: number, data: Float32Array) =>
    ctx.tensor([to - from, c.kvHeads, c.headDim], 'f32', data.subarray(from * rowLen, to * rowLen));
  const tq = ctx.tensor([c.tokens, c.heads, c.headDim], 'f32', q);
  const out = ctx.tensor([c.tokens, c.heads, c.headDim], 'f32');
  submit(ctx, (e) => {
    cache.append(e, rows(0, c.startPos, k), rows(0, c.startPos, v));
    cache.append(e, rows(c.startPos, n, k), rows(c.startPos, n, v));
    op.run(e, tq, cache, out, { scale: c.scale, window: c.window, softcap: c.softcap });
  });
  const want = attentionRef(q, k, v, { ...c, scale: c.scale, window: c.window, softcap: c.softcap });
  const outcome = allclose(await ctx.read(out), want, TOL.f32.atol, TOL.f32.rtol);
  cache.destroy();
  op.destroy();
  const label = `h${c.heads}/kv${c.kvHeads}/d${c.headDim} T${c.tokens}@${c.startPos}${c.window ? ` window ${c.window}` : ''}`;
  return { ok: outcome.ok, detail: `${label}: ${outcome.detail}` };
}

async function checkCombos(ctx: GpuContext, combos: Combo[], seed: number): Promise<CaseOutcome> {
  const outcomes = [];
  for (const [i, c] of combos.entries()) outcomes.push(await checkCombo(ctx, c, seed + 10 * i));
  return all(outcomes);
}

export const CASES: KernelCase[] = [
  {
    name: 'attention: prefill vs reference (GQA, MHA, MQA, 1 head, headDim 16..256, tile remainders)',
    async run(ctx) {
      return checkCombos(ctx, [
        { heads: 1, kvHeads: 1, headDim: 64, tokens: 2, startPos: 0 },
        { heads: 4, kvHeads: 4, headDim: 64, tokens: 5, startPos: 0 },
        { heads: 8, kvHeads: 2, headDim: 64, tokens: 17, startPos: 30 },
        { heads: 4, kvHeads: 1, headDim: 128, tokens: 9, startPos: 100 },
        { heads: 2, kvHeads: 1, headDim: 256, tokens: 3, startPos: 70 },
        { heads: 6, kvHeads: 3, headDim: 80, tokens: 4, startPos: 61 },
        { heads: 4, kvHeads: 2, headDim: 32, tokens: 7, startPos: 65 },
        { heads: 2, kvHeads: 2, headDim: 16, tokens: 33, startPos: 0, workgroupSize: 128 },
        { heads: 4, kvHeads: 2, headDim: 64, tokens: 6, startPos: 11, scale: 0.3 },
      ], 100);
    },
  },
  {
    // Windows inside one tile, across tiles, wider than the context; decode splits wholly before
    // the window (they score no key) next to the one that holds it.
    name: 'attention: sliding windows and soft-capped scores, prefill and decode split over keys',
    async run(ctx) {
      return checkCombos(ctx, [
        { heads: 4, kvHeads: 2, headDim: 64, tokens: 17, startPos: 30, window: 5 },
        { heads: 4, kvHeads: 2, headDim: 64, tokens: 40, startPos: 100, window: 70 },
        { heads: 2, kvHeads: 1, headDim: 32, tokens: 9, startPos: 0, window: 1 },
        { heads: 4, kvHeads: 4, headDim: 64, tokens: 3, startPos: 10, window: 4096 },
        { heads: 8, kvHeads: 2, headDim: 128, tokens: 1, startPos: 999, window: 40 },
        { heads: 4, kvHeads: 2, headDim: 64, tokens: 1, startPos: 700, window: 300, workgroupSize: 32 },
        // Gemma 2's soft-capped scores (a cap low enough to bend them), windowed and not.
        { heads: 4, kvHeads: 2, headDim: 64, tokens: 9, startPos: 20, softcap: 0.5, scale: 2 },
        { heads: 8, kvHeads: 4, headDim: 128, tokens: 1, startPos: 600, window: 100, softcap: 1, scale: 1 },
      ], 250);
    },
  },
  {
    name: 'attention: long prefill (T 48 at position 900)',
    async run(ctx) {
      return checkCombo(ctx, { heads: 4, kvHeads: 2, headDim: 64, tokens: 48, startPos: 900 }, 200);
    },
  },
  {
    name: 'attention: decode vs reference (T 1 at 0, short, split over keys up to 1000 positions)',
    async run(ctx) {
      return checkCombos(ctx, [
        { heads: 1, kvHeads: 1, headDim: 64, tokens: 1, startPos: 0 },
        { heads: 4, kvHeads: 4, headDim: 128, tokens: 1, startPos: 0 },
        { heads: 6, kvHeads: 3, headDim: 80, tokens: 1, startPos: 130 },
        { heads: 4, kvHeads: 2, headDim: 64, tokens: 1, startPos: 300 },
        { heads: 8, kvHeads: 2, headDim: 128, tokens: 1, startPos: 999 },
        { heads: 4, kvHeads: 1, headDim: 256, tokens: 1, startPos: 520 },
        { heads: 2, kvHeads: 1, headDim: 64, tokens: 1, startPos: 700, workgroupSize: 32, scale: 0.05 },
      ], 300);
    },
  },
  {
    name: 'attention: decoding one token at a time matches the all-at-once prefill',
    async run(ctx) {
      const [heads, kvHeads, headDim, n] = [4, 2, 64, 120];
      const rowLen = kvHeads * headDim;
      const qLen = heads * headDim;
      const k = randomFloats(400, n * rowLen);
      const v = randomFloats(401, n * rowLen);
      const q = randomFloats(402, n * qLen);
      const run = await prefillAndDecode(ctx, { heads, kvHeads, headDim, n }, k, v, q);
      const want = attentionRef(q, k, v, { tokens: n, heads, kvHeads, headDim, startPos: 0 });
      const outcome = all([
        allclose(run.decoded, run.prefill, TOL.f32.atol, TOL.f32.rtol),
        allclose(run.decoded, want, TOL.f32.atol, TOL.f32.rtol),
        { ok: run.stepwise.length === n, detail: `length ${run.stepwise.length}` },
      ]);
      run.destroy();
      return outcome;
    },
  },
  {
    name: 'attention: cache overflow, GQA divisibility, shapes and limits are named errors',
    async run(ctx) {
      const op = new AttentionOp(ctx, { headDim: 8 });
      const cache = new KvCache(ctx, { kvHeads: 4, headDim: 8, maxSeq: 8 });
      const kv = (t: number, heads = 4, hd = 8) => ctx.tensor([t, heads, hd], 'f32');
      submit(ctx, (e) => cache.append(e, kv(5), kv(5)));
      const overflow = await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => cache.append(e, kv(4), kv(4))));
      const q = (t: number, heads: number, hd = 8) => ctx.tensor([t, heads, hd], 'f32');
      const rows = Math.ceil(ctx.limits.maxStorageBufferBindingSize / 4 / (8 * 128)) + 1;
      const limit = await expectCode('ERR_GPU_LIMIT', () => new KvCache(ctx, { kvHeads: 8, headDim: 128, maxSeq: rows }));
      const outcome = all([
        overflow,
        { ok: /maxSeq 8/.test(overflow.detail) && cache.length === 5, detail: 'names maxSeq, length unchanged' },
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, q(1, 6), cache, q(1, 6)))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, q(1, 8, 4), cache, q(1, 8, 4)))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, q(2, 8), cache, q(1, 8)))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, ctx.tensor([1, 8, 8], 'u32'), cache, q(1, 8)))),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.run(e, q(6, 8), cache, q(6, 8)))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => cache.append(e, kv(1, 2), kv(1, 2)))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => cache.append(e, kv(1), kv(2)))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => new AttentionOp(ctx, { headDim: 16 }).run(e, q(1, 4, 16), cache, q(1, 4, 16)))),
        await expectCode('ERR_INVALID_ARGUMENT', () => new AttentionOp(ctx, { headDim: 8, workgroupSize: 48 })),
        await expectCode('ERR_GPU_LIMIT', () => new AttentionOp(ctx, { headDim: 8, workgroupSize: 1 << 16 })),
        limit,
        { ok: /maxStorageBufferBindingSize|maxBufferSize/.test(limit.detail), detail: 'names the limit' },
        { ok: cache.bytes === 2 * 4 * 8 * 8 * 4, detail: `bytes ${cache.bytes}` },
      ]);
      cache.destroy();
      return all([outcome, await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => cache.append(e, kv(1), kv(1))))]);
    },
  },
];
