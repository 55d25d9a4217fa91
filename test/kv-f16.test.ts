// The f16 KV cache option (KvStoreOptions.dtype, Shard.load's kvDtype). Defined as the f32 cache on
// keys and values rounded to f16 (ties to even): the CPU store computes exactly that, WebGPU within
// float noise of it. On the fixture models (random weights, sharp attention) it gives the float64
// reference's logits with an f16 cache, moves them under 2% of their range from the f32 cache's,
// keeps the golden tokens but for near ties, halves every session's bytes (so a budget holds twice
// the tokens) and batches as sessions alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attentionFast } from '../client/model/backend/cpu-attention.ts';
import { CpuKvStore } from '../client/model/backend/cpu.ts';
import { createBackend } from '../client/model/backend/select.ts';
import type { AttentionOptions, Backend, KvStore, KvStoreOptions } from '../client/model/backend/types.ts';
import type { CheckpointReader } from '../client/model/checkpoint/reader.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import { attentionRef, type AttentionDims } from '../kernels/cpu/attention.ts';
import { f32ToF16, roundF16, roundF16Array } from '../kernels/quant.ts';
import { BASE_MODELS, fixtures, loadReference, ReferenceSession, topTwo, type FixtureModel, type ReferenceModel } from './fixtures/index.ts';
import { argmax, failure, gpuContext, greedyRun, maxAbsDiff, openFixture, runLayers, type GreedyRun } from './helpers/model-runtime.ts';
import { mulberry32 } from './helpers/random.ts';

/**
 * Logits against the float64 reference with an f16 cache (measured up to 0.06). Looser than
 * model-golden's 5e-3: where an f32 key lies within its float noise of a midpoint between halves,
 * the runtime and the reference round it to neighbouring halves, and the fixtures' sharp attention
 * amplifies that ulp.
 */
const REFERENCE_TOLERANCE = 0.1;
/** Largest change from the f32 cache's logits, as a fraction of their range (~110-165 units; measured up to 1.8%). */
const F32_TOLERANCE = 0.03;
/** A golden step whose top-two gap (f32 cache) is below this may pick the runner-up with an f16 cache. */
const NEAR_TIE = 0.25;
/** CPU and WebGPU on the same f16 cache, in logit units (measured 4e-3; a key rounded to the neighbouring half may add more). */
const BACKEND_TOLERANCE = 2e-2;

const uniform = (seed: number, n: number, span: number) => {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: n }, () => span * (2 * rand() - 1));
};

let models: FixtureModel[];
beforeAll(async () => {
  models = (await fixtures()).models;
});
const golden = (name: string, i: number) => models.find((m) => m.name === name)!.golden[i]!;

let gpu: Backend;
const cpu = await createBackend('cpu');
beforeAll(async () => {
  gpu = await createBackend('webgpu', { gpu: await gpuContext() });
});
afterAll(() => gpu?.destroy());
const backendOf = (kind: 'cpu' | 'webgpu') => (kind === 'cpu' ? cpu : gpu);

describe('the CPU store', () => {
  it('keeps f16 bits, rounded as f32ToF16, in half the bytes, across growth and truncation', () => {
    const store = new CpuKvStore({ kvHeads: 2, headDim: 3, maxSeq: 100, dtype: 'f16' });
    const k = uniform(1, 100 * 6, 70000);
    const v = uniform(2, 100 * 6, 3);
    store.append(k.subarray(0, 6), v.subarray(0, 6));
    store.append(k.subarray(6, 80 * 6), v.subarray(6, 80 * 6));
    expect(store.k).toBeInstanceOf(Uint16Array);
    expect(store.k).toEqual(Uint16Array.from(k.subarray(0, 80 * 6), f32ToF16));
    expect(store.v).toEqual(Uint16Array.from(v.subarray(0, 80 * 6), f32ToF16));
    expect(store.bytes).toBe(2 * 100 * 6 * 2);
    store.truncate(10);
    store.append(k.subarray(0, 6), v.subarray(0, 6));
    expect(store.k.subarray(60)).toEqual(Uint16Array.from(k.subarray(0, 6), f32ToF16));
    expect(() => new CpuKvStore({ kvHeads: 1, headDim: 1, maxSeq: 1, dtype: 'bf16' as 'f16' })).toThrowError(expect.objectContaining({ code: 'ERR_DTYPE_UNSUPPORTED' }));
  });

  it('attention over halves is attentionRef on the rounded values, bit for bit', () => {
    const dims: AttentionDims = { tokens: 5, heads: 6, kvHeads: 2, headDim: 24, startPos: 37 };
    const n = (dims.startPos + dims.tokens) * dims.kvHeads * dims.headDim;
    const [k, v] = [uniform(3, n, 4), uniform(4, n, 4)];
    const q = uniform(5, dims.tokens * dims.heads * dims.headDim, 1);
    const [kHalves, vHalves] = [Uint16Array.from(k, f32ToF16), Uint16Array.from(v, f32ToF16)];
    for (const options of [{}, { window: 3 }, { window: 1 }, { softcap: 0.5, scale: 2 }, { window: 9, softcap: 1 }]) {
      const want = attentionRef(q, roundF16Array(k), roundF16Array(v), { ...dims, ...options });
      expect(attentionFast(q, kHalves, vHalves, { ...dims, ...options })).toEqual(want);
      // The rounding shows: not the f32 cache's result.
      expect(maxAbsDiff(want, attentionRef(q, k, v, { ...dims, ...options }))).toBeGreaterThan(1e-4);
    }
  });
});

/** Appends k, v in chunks (one pass each) and attends with each chunk's queries; returns every output. */
async function attendInChunks(backend: Backend, options: KvStoreOptions, chunks: number[], attention: AttentionOptions, seed: number, round = false): Promise<Float32Array[]> {
  const { kvHeads, headDim } = options;
  const heads = 2 * kvHeads;
  let store: KvStore | undefined;
  const outputs: Float32Array[] = [];
  for (const [i, tokens] of chunks.entries()) {
    const k = uniform(seed + 3 * i, tokens * kvHeads * headDim, 4);
    const v = uniform(seed + 3 * i + 1, tokens * kvHeads * headDim, 4);
    const q = uniform(seed + 3 * i + 2, tokens * heads * headDim, 1);
    outputs.push(await backend.run((ops) => {
      store ??= backend.kvStore(options);
      const kv = (x: Float32Array) => ops.input(round ? roundF16Array(x) : x, [tokens, kvHeads, headDim]);
      return ops.attention(ops.input(q, [tokens, heads, headDim]), kv(k), kv(v), store, attention);
    }));
  }
  store?.destroy();
  return outputs;
}

describe('both backends on an f16 store (GQA, appends across passes, windows, soft-caps)', () => {
  const SHAPES = [
    { kvHeads: 2, headDim: 32, chunks: [7, 1, 1, 20, 1], attention: {} },
    { kvHeads: 1, headDim: 64, chunks: [30, 1, 1], attention: { window: 4 } },
    { kvHeads: 2, headDim: 16, chunks: [3, 12, 1], attention: { softcap: 0.5, scale: 2 } },
    { kvHeads: 3, headDim: 5, chunks: [9, 1, 2], attention: { window: 6, softcap: 1 } },
  ];

  it.each(SHAPES)('kv $kvHeads x $headDim, chunks $chunks, $attention', async ({ kvHeads, headDim, chunks, attention }) => {
    const options = { kvHeads, headDim, maxSeq: 64 };
    const seed = 100 * headDim;
    const cpuHalf = await attendInChunks(cpu, { ...options, dtype: 'f16' }, chunks, attention, seed);
    const cpuRounded = await attendInChunks(cpu, options, chunks, attention, seed, true);
    const gpuHalf = await attendInChunks(gpu, { ...options, dtype: 'f16' }, chunks, attention, seed);
    const cpuFull = await attendInChunks(cpu, options, chunks, attention, seed);
    // The CPU's f16 store is the f32 store of rounded values, exactly.
    expect(cpuHalf).toEqual(cpuRounded);
    const worst = Math.max(...gpuHalf.map((out, i) => maxAbsDiff(out, cpuHalf[i]!)));
    expect(worst).toBeLessThan(1e-5);
    // And it is not the f32 store's result.
    expect(Math.max(...cpuFull.map((out, i) => maxAbsDiff(out, cpuHalf[i]!)))).toBeGreaterThan(1e-4);
  });

  it('kvBytes halves on both backends', () => {
    const options = { kvHeads: 4, headDim: 64, maxSeq: 100 };
    for (const backend of [cpu, gpu]) {
      expect(backend.kvBytes({ ...options, dtype: 'f16' })).toBe(backend.kvBytes(options) / 2);
      expect(backend.kvBytes({ ...options, dtype: 'f32' })).toBe(backend.kvBytes(options));
    }
  });
});

/**
 * The float64 reference whose KV cache keeps keys and values rounded to f16: the function an f16
 * cache defines. (The reference's cache lists are private: their push is wrapped to round.)
 */
function f16CacheSession(model: ReferenceModel): ReferenceSession {
  const session = new ReferenceSession(model);
  const cache = session as unknown as { keys: Float64Array[][]; values: Float64Array[][] };
  for (const list of [...cache.keys, ...cache.values]) {
    list.push = (...rows: Float64Array[]) => Array.prototype.push.apply(list, rows.map((r) => Float64Array.from(r, roundF16)));
  }
  return session;
}

/** Logits of the prompt's last token, then of each continuation token fed in turn (the golden path, whatever the logits pick). */
async function teacherForced(head: Head, shard: Shard, prompt: readonly number[], continuation: readonly number[], session: string): Promise<Float32Array[]> {
  const steps = [await head.logits(await runLayers(head, [shard], prompt, 0, session), prompt.length)];
  for (const [i, t] of continuation.slice(0, -1).entries()) {
    steps.push(await head.logits(await runLayers(head, [shard], [t], prompt.length + i, session), 1));
  }
  shard.release(session);
  return steps;
}

interface Loaded {
  head: Head;
  f32: Shard;
  f16: Shard;
}

const MODEL_RUNS = [
  { kind: 'cpu' as const, names: BASE_MODELS, prompts: [0, 3] },
  // SwiftShader is slow: the layers whose attention differs (GQA, MHA, windows, soft-caps).
  { kind: 'webgpu' as const, names: ['tiny-llama', 'tiny-gpt2', 'tiny-gemma2', 'tiny-gemma3'], prompts: [3] },
];

describe.each(MODEL_RUNS)('fixture models with kvDtype f16 on the $kind backend', ({ kind, names, prompts }) => {
  const loaded = new Map<string, Loaded>();
  const readers = new Map<string, CheckpointReader>();
  afterAll(() => {
    for (const { head, f32, f16 } of loaded.values()) [f16, f32, head].forEach((x) => x.destroy());
  });

  async function reader(name: string): Promise<CheckpointReader> {
    let r = readers.get(name);
    if (!r) readers.set(name, (r = await openFixture(name)));
    return r;
  }

  async function load(name: string): Promise<Loaded> {
    let model = loaded.get(name);
    if (!model) {
      const backend = backendOf(kind);
      const head = await Head.load(await reader(name), { backend });
      const end = head.config.numLayers;
      model = {
        head,
        f32: await Shard.load(await reader(name), { start: 0, end, backend }),
        f16: await Shard.load(await reader(name), { start: 0, end, backend, kvDtype: 'f16' }),
      };
      loaded.set(name, model);
    }
    return model;
  }

  it.each(names)('%s: the f16-cache reference\'s logits, near the f32 cache\'s, golden tokens where the gap allows', async (name) => {
    const { head, f32, f16 } = await load(name);
    expect([f32.kvDtype, f16.kvDtype]).toEqual(['f32', 'f16']);
    const ref = await loadReference(name);
    for (const index of prompts) {
      const g = golden(name, index);
      const full = await teacherForced(head, f32, g.ids, g.greedy, `full-${index}`);
      const half = await teacherForced(head, f16, g.ids, g.greedy, `half-${index}`);
      const session = f16CacheSession(ref);
      const expected = [session.append(g.ids).at(-1)!, ...g.greedy.slice(0, -1).map((t) => session.append([t])[0]!)];
      expect(Math.max(...half.map((l, s) => maxAbsDiff(l, expected[s]!)))).toBeLessThan(REFERENCE_TOLERANCE);
      const moved = Math.max(...half.map((l, s) => maxAbsDiff(l, full[s]!) / (Math.max(...full[s]!) - Math.min(...full[s]!))));
      expect(moved).toBeGreaterThan(0);
      expect(moved).toBeLessThan(F32_TOLERANCE);
      for (const [s, logits] of half.entries()) {
        if (topTwo(Float64Array.from(full[s]!)).gap >= NEAR_TIE) expect(argmax(logits), `step ${s}`).toBe(g.greedy[s]);
      }
    }
  });

  it('a session takes half the bytes and a budget holds twice the tokens', async () => {
    const backend = backendOf(kind);
    const llama = await reader('tiny-llama');
    const head = await Head.load(llama, { backend });
    const end = head.config.numLayers;
    const maxSessionTokens = 16;
    const f32 = await Shard.load(llama, { start: 0, end, backend, maxSessionTokens });
    const { sessionBytes } = f32.kv;
    f32.destroy();
    // Half an f32 session's bytes: too little for one f32 session, room for one f16 session.
    await failure(Shard.load(llama, { start: 0, end, backend, maxSessionTokens, kvBudgetBytes: sessionBytes / 2 }), 'ERR_KV_BUDGET');
    (await Shard.load(llama, { start: 0, end, backend, maxSessionTokens, kvBudgetBytes: sessionBytes / 2, kvDtype: 'f16' })).destroy();
    const held = { f32: 0, f16: 0 };
    for (const kvDtype of ['f32', 'f16'] as const) {
      const shard = await Shard.load(llama, { start: 0, end, backend, maxSessionTokens, kvDtype, kvBudgetBytes: 2 * sessionBytes });
      expect(shard.kv.sessionBytes).toBe(kvDtype === 'f16' ? sessionBytes / 2 : sessionBytes);
      const ids = golden('tiny-llama', 0).ids;
      // Five sessions: the budget keeps what fits and evicts the oldest for the rest.
      for (let s = 0; s < 5; s++) await runLayers(head, [shard], ids, 0, `s${s}`);
      held[kvDtype] = shard.kv.sessions * maxSessionTokens;
      await failure(runLayers(head, [shard], [1], ids.length, 's0'), 'ERR_SESSION_EVICTED');
      shard.destroy();
    }
    expect(held).toEqual({ f32: 2 * maxSessionTokens, f16: 4 * maxSessionTokens });
    head.destroy();
  });

  it('batched decode steps of f16 sessions equal each session alone', async () => {
    const { head, f16: shard } = await load('tiny-gemma3');
    const STEPS = 6;
    const PROMPTS = [0, 1, 2];
    const alone = await Promise.all(PROMPTS.map((i) => greedyRun(head, [shard], golden('tiny-gemma3', i).ids, STEPS, `alone${i}`)));
    const sessions = await Promise.all(PROMPTS.map(async (i) => {
      const ids = golden('tiny-gemma3', i).ids;
      const hidden = await runLayers(head, [shard], ids, 0, `b${i}`);
      return { id: `b${i}`, position: ids.length, token: argmax(await head.logits(hidden, ids.length)) };
    }));
    for (let step = 1; step < STEPS; step++) {
      const items = await Promise.all(sessions.map(async (s) => ({
        hidden: await head.embed(Uint32Array.of(s.token), Uint32Array.of(s.position)),
        position: s.position,
        sessionId: s.id,
      })));
      const out = await shard.forwardBatch(items);
      for (const [b, s] of sessions.entries()) {
        const expected = alone[b]!.hidden[step]!;
        // On WebGPU a batch's linears sum in another order (model-batch.test.ts): a key that lands
        // near a midpoint between halves may round to the neighbouring one, so the bound is looser.
        if (kind === 'cpu') expect(out[b]).toEqual(expected);
        else expect(maxAbsDiff(out[b]!, expected) / Math.max(...expected.map(Math.abs))).toBeLessThan(1e-4);
        s.token = argmax(await head.logits(out[b]!, 1));
        expect(s.token).toBe(alone[b]!.tokens[step]);
        s.position++;
      }
    }
    for (const s of sessions) shard.release(s.id);
  });

  it('refuses a kvDtype it does not know', async () => {
    await failure(Shard.load(await reader('tiny-llama'), { start: 0, end: 1, backend: backendOf(kind), kvDtype: 'bf16' as 'f16' }), 'ERR_INVALID_ARGUMENT', 'kvDtype');
  });
});

it('CPU and WebGPU f16 caches give the same logits', async () => {
  const reader = await openFixture('tiny-gemma2');
  const runs: GreedyRun[] = [];
  for (const backend of [cpu, gpu]) {
    const head = await Head.load(reader, { backend });
    const shard = await Shard.load(reader, { start: 0, end: head.config.numLayers, backend, kvDtype: 'f16' });
    runs.push(await greedyRun(head, [shard], golden('tiny-gemma2', 3).ids, 8, 'both'));
    shard.destroy();
    head.destroy();
  }
  expect(runs[1]!.tokens).toEqual(runs[0]!.tokens);
  expect(Math.max(...runs[1]!.logits.map((l, s) => maxAbsDiff(l, runs[0]!.logits[s]!)))).toBeLessThan(BACKEND_TOLERANCE);
});
