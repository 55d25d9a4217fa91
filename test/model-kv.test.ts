// KV sessions under a byte budget (LRU eviction of idle sessions, ERR_SESSION_EVICTED, ERR_KV_BUDGET,
// release), and forward()'s refusals: non-finite inputs, wrong lengths, positions that do not
// continue the cache. A refused or failed pass leaves the session's cache as it was.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bucketBytes } from '../client/model/backend/pool.ts';
import { createBackend } from '../client/model/backend/select.ts';
import type { Backend, KvStore, Ops } from '../client/model/backend/types.ts';
import type { CheckpointReader } from '../client/model/checkpoint/reader.ts';
import { Head } from '../client/model/head.ts';
import { KvSessions } from '../client/model/kv-sessions.ts';
import { Shard } from '../client/model/shard.ts';
import { fixtures, GOLDEN_STEPS, type FixtureModel } from './fixtures/index.ts';
import { failure, gpuContext, greedyRun, maxAbsDiff, openFixture, runLayers } from './helpers/model-runtime.ts';

const cpu = await createBackend('cpu');
let models: FixtureModel[];
let reader: CheckpointReader;
let head: Head;

beforeAll(async () => {
  models = (await fixtures()).models;
  reader = await openFixture('tiny-llama');
  head = await Head.load(reader, { backend: cpu });
});

const golden = (name: string, i: number) => models.find((m) => m.name === name)!.golden[i]!;
const positions = (from: number, count: number) => Uint32Array.from({ length: count }, (_, i) => from + i);

describe('KvSessions', () => {
  const fakeStore = (): KvStore => ({ length: 0, bytes: 100, truncate() {}, destroy() {} });
  const sessions = (budget: number) => new KvSessions({ budgetBytes: budget, sessionBytes: 100, create: () => [fakeStore()] });

  it('evicts idle sessions, least recently used first, and remembers them', () => {
    const kv = sessions(300);
    for (const id of ['a', 'b', 'c']) kv.create(id);
    kv.lookup('a');
    kv.create('d');
    expect(kv.ids()).toEqual(['c', 'a', 'd']);
    expect(kv.lookup('b')).toBe('evicted');
    kv.create('e');
    expect(kv.ids()).toEqual(['a', 'd', 'e']);
    expect(kv.lookup('c')).toBe('evicted');
    expect(kv.usage).toEqual({ usedBytes: 300, budgetBytes: 300, sessionBytes: 100, sessions: 3 });
  });

  it('never evicts a session with a pass in flight; with no idle one, ERR_KV_BUDGET', () => {
    const kv = sessions(200);
    kv.create('a').busy++;
    kv.create('b');
    kv.create('c');
    expect(kv.ids()).toEqual(['a', 'c']);
    (kv.lookup('c') as { busy: number }).busy++;
    expect(() => kv.create('d')).toThrowError(expect.objectContaining({ code: 'ERR_KV_BUDGET' }));
  });

  it('release frees bytes and forgets the id; one session over the budget is ERR_KV_BUDGET', () => {
    const kv = sessions(200);
    kv.create('a');
    kv.create('b');
    expect(kv.release('a')).toBe(true);
    expect(kv.release('a')).toBe(false);
    expect(kv.usage.usedBytes).toBe(100);
    expect(kv.lookup('a')).toBeUndefined();
    expect(() => sessions(99)).toThrowError(expect.objectContaining({ code: 'ERR_KV_BUDGET' }));
  });
});

describe.each(['cpu', 'webgpu'] as const)('Shard sessions on the %s backend', (kind) => {
  let backend: Backend;
  let shard: Shard;
  const MAX = 64;

  beforeAll(async () => {
    backend = await createBackend(kind, kind === 'webgpu' ? { gpu: await gpuContext() } : {});
    // Room for exactly two sessions of 64 tokens.
    shard = await Shard.load(reader, { start: 0, end: 4, backend, maxSessionTokens: MAX, kvBudgetBytes: 2 * 4 * 2 * 2 * MAX * 16 * 4 });
  });
  afterAll(() => {
    shard?.destroy();
    if (kind === 'webgpu') backend?.destroy();
  });

  const prefill = async (id: string, tokens = [1, 20, 30]) => shard.forward(await head.embed(Uint32Array.from(tokens), positions(0, tokens.length)), positions(0, tokens.length), id);
  /** Decodes one token after a 3-token prefill and `extra` decoded ones. */
  const step = async (id: string, token: number, extra = 0) => shard.forward(await head.embed(Uint32Array.of(token), positions(3 + extra, 1)), positions(3 + extra, 1), id);
  afterEach(() => {
    for (const id of shard.sessionIds()) shard.release(id);
  });

  it('evicts the least recently used session; a later call on it is ERR_SESSION_EVICTED; release frees bytes', async () => {
    const one = 4 * 2 * 2 * MAX * 16 * 4; // layers x (k, v) x kvHeads x tokens x headDim x f32
    expect(shard.kv).toMatchObject({ usedBytes: 0, sessionBytes: one, budgetBytes: 2 * one, sessions: 0 });
    const first = await prefill('a');
    await prefill('b');
    await step('a', 7);
    await prefill('c');
    expect(shard.kv).toMatchObject({ usedBytes: 2 * one, sessions: 2 });
    await failure(step('b', 7), 'ERR_SESSION_EVICTED', 'replay');
    // Replaying from position 0 makes a fresh cache (evicting 'a', now the least recent).
    expect(await prefill('b')).toEqual(first);
    await failure(step('a', 9, 1), 'ERR_SESSION_EVICTED');
    expect(shard.release('b')).toBe(true);
    expect(shard.release('b')).toBe(false);
    expect(shard.kv).toMatchObject({ usedBytes: one, sessions: 1 });
    shard.release('c');
    expect(shard.kv.usedBytes).toBe(0);
  });

  it('refuses NaN, infinity, wrong lengths and positions that do not continue the cache', async () => {
    const H = 64;
    const x = await head.embed(Uint32Array.of(1, 2), positions(0, 2));
    const nan = x.slice();
    nan[70] = NaN;
    await failure(shard.forward(nan, positions(0, 2), 'e'), 'ERR_INVALID_ARGUMENT', 'non-finite', 'row 1');
    const inf = x.slice();
    inf[3] = -Infinity;
    await failure(shard.forward(inf, positions(0, 2), 'e'), 'ERR_INVALID_ARGUMENT', 'non-finite');
    await failure(shard.forward(x.subarray(0, H + 1), positions(0, 2), 'e'), 'ERR_SHAPE_MISMATCH', '[2, 64]');
    await failure(shard.forward(x, positions(0, 3), 'e'), 'ERR_SHAPE_MISMATCH');
    await failure(shard.forward(x, positions(5, 2), 'e'), 'ERR_INVALID_ARGUMENT', 'continue', 'no cache');
    await failure(shard.forward(x, Uint32Array.of(0, 2), 'e'), 'ERR_INVALID_ARGUMENT', 'positions[1] = 2, expected 1');
    await failure(shard.forward(x, positions(0, 2), ''), 'ERR_INVALID_ARGUMENT', 'sessionId');
    expect(shard.kv.sessions).toBe(0);
    const good = await shard.forward(x, positions(0, 2), 'e');
    await failure(shard.forward(x.subarray(0, H), positions(1, 1), 'e'), 'ERR_INVALID_ARGUMENT', 'has 2 cached tokens');
    await failure(shard.forward(x.subarray(0, H), positions(0, 1), 'e'), 'ERR_INVALID_ARGUMENT', 'expected 2');
    await failure(shard.forward(new Float32Array(63 * H), positions(2, 63), 'e'), 'ERR_INVALID_ARGUMENT', 'maxSessionTokens');
    // None of the refusals touched the cache: the session continues as if they never came.
    expect(shard.sessionLength('e')).toBe(2);
    shard.release('e');
    expect(await shard.forward(x, positions(0, 2), 'e')).toEqual(good);
    shard.release('e');
  });

  it('a prefill sent in chunks without waiting equals one pass over the whole prompt', async () => {
    const ids = golden('tiny-llama', 3).ids.slice(0, 48);
    const hidden = await head.embed(Uint32Array.from(ids), positions(0, ids.length));
    const whole = await shard.forward(hidden, positions(0, ids.length), 'whole');
    const H = 64;
    const chunks = [[0, 16], [16, 32], [32, 33], [33, 48]] as const;
    const parts = await Promise.all(chunks.map(([a, b]) => shard.forward(hidden.slice(a * H, b * H), positions(a, b - a), 'chunked')));
    const joined = new Float32Array(whole.length);
    parts.forEach((part, i) => joined.set(part, chunks[i]![0] * H));
    if (kind === 'cpu') expect(joined).toEqual(whole);
    else expect(maxAbsDiff(joined, whole)).toBeLessThan(1e-3);
    expect(shard.sessionLength('chunked')).toBe(48);
  });

  it('interleaved sessions, called without waiting, give each its golden tokens', async () => {
    const prompts = [1, 2];
    const runs = await Promise.all(prompts.map((i) => greedyRun(head, [shard], golden('tiny-llama', i).ids, GOLDEN_STEPS / 2, `p${i}`)));
    runs.forEach((run, i) => expect(run.tokens).toEqual(golden('tiny-llama', prompts[i]!).greedy.slice(0, GOLDEN_STEPS / 2)));
  });
});

describe('a pass that fails while recording', () => {
  it('leaves the session cache as it was', async () => {
    let failAt = -1;
    let calls = 0;
    // The CPU backend, with attention failing at a chosen call.
    const faulty: Backend = Object.assign(Object.create(cpu) as Backend, {
      run: (record: (ops: Ops) => unknown) => cpu.run((ops) => record(new Proxy(ops, {
        get: (target, key) => (key === 'attention' && calls++ === failAt ? () => { throw new Error('injected'); } : Reflect.get(target, key)),
      })) as never),
    });
    const shard = await Shard.load(reader, { start: 0, end: 4, backend: faulty, maxSessionTokens: 32 });
    const reference = await Shard.load(reader, { start: 0, end: 4, backend: cpu, maxSessionTokens: 32 });
    const ids = golden('tiny-llama', 1).ids;
    const expected = await runLayers(head, [reference], [...ids, 17], 0, 'r');
    await runLayers(head, [shard], ids, 0, 's');
    calls = 0;
    failAt = 2; // the third layer's attention, after two layers appended their keys
    await expect(runLayers(head, [shard], [17], ids.length, 's')).rejects.toThrow('injected');
    expect(shard.sessionLength('s')).toBe(ids.length);
    calls = 0;
    failAt = 0;
    await expect(runLayers(head, [shard], [1, 2], 0, 'new')).rejects.toThrow('injected');
    expect(shard.kv.sessions).toBe(1);
    failAt = -1;
    const last = await runLayers(head, [shard], [17], ids.length, 's');
    expect(last).toEqual(expected.subarray(ids.length * 64));
    shard.destroy();
    reference.destroy();
  });
});

describe('Head refusals', () => {
  it('names ids out of range, bad positions and non-finite hidden states', async () => {
    await failure(head.embed(Uint32Array.of(1, 256), positions(0, 2)), 'ERR_INVALID_ARGUMENT', 'ids[1] = 256');
    await failure(head.embed(Uint32Array.of(1, 2), positions(0, 1)), 'ERR_INVALID_ARGUMENT', 'one entry per token');
    await failure(head.embed(Uint32Array.of(1), Uint32Array.of(256)), 'ERR_INVALID_ARGUMENT', 'positions[0] = 256');
    await failure(head.embed(new Uint32Array(0), new Uint32Array(0)), 'ERR_INVALID_ARGUMENT', 'non-empty');
    const hidden = new Float32Array(128);
    hidden[100] = NaN;
    await failure(head.logits(hidden, 2), 'ERR_INVALID_ARGUMENT', 'non-finite');
    await failure(head.logits(new Float32Array(100), 2), 'ERR_SHAPE_MISMATCH');
    await failure(head.logits(new Float32Array(64), 0), 'ERR_INVALID_ARGUMENT', 'positive integer');
  });
});

describe('activation buffer buckets', () => {
  it('round up by at most a quarter octave and never past the binding limit', () => {
    let previous = 0;
    for (let bytes = 1; bytes < 1 << 20; bytes = Math.ceil(bytes * 1.37) + 3) {
      const b = bucketBytes(bytes, 1 << 30);
      expect(b).toBeGreaterThanOrEqual(Math.max(bytes, 256));
      expect(b).toBeLessThanOrEqual(Math.max(256, bytes * 1.25 + 4));
      expect(b).toBeGreaterThanOrEqual(previous);
      previous = b;
    }
    expect(bucketBytes(1000, 1000)).toBe(1000);
    expect(bucketBytes(1001, 1010)).toBe(1004);
  });
});
