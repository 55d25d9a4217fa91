// Continuous batching: decode steps of several sessions as one pass (Shard.forwardBatch) compute
// what each session's own forward() computes: on the CPU bit for bit, on WebGPU within 1e-5 of the
// largest magnitude (the linear kernel sums in another order for one row than for several). A bad
// item refuses the whole batch before anything runs; a failed pass rolls every session back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackend } from '../client/model/backend/select.ts';
import type { Backend, Ops } from '../client/model/backend/types.ts';
import type { CheckpointReader } from '../client/model/checkpoint/reader.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import { fixtures, type FixtureModel } from './fixtures/index.ts';
import { argmax, failure, gpuContext, greedyRun, maxAbsDiff, openFixture, runLayers } from './helpers/model-runtime.ts';

const STEPS = 8;
const PROMPTS = [0, 1, 2];
/** Models whose layers differ in what a batch could mix up: rows routed to different experts, local windows. */
const BATCHED = ['tiny-llama', 'tiny-gpt2', 'tiny-qwen3-moe', 'tiny-gemma3'];
let models: FixtureModel[];
const readers = new Map<string, CheckpointReader>();

beforeAll(async () => {
  models = (await fixtures()).models;
  for (const name of BATCHED) readers.set(name, await openFixture(name));
});

const golden = (name: string, i: number) => models.find((m) => m.name === name)!.golden[i]!;

describe.each(['cpu', 'webgpu'] as const)('forwardBatch on the %s backend', (kind) => {
  let backend: Backend;
  const loaded: { destroy(): void }[] = [];

  beforeAll(async () => {
    backend = await createBackend(kind, kind === 'webgpu' ? { gpu: await gpuContext() } : {});
  });
  afterAll(() => {
    for (const item of loaded) item.destroy();
    if (kind === 'webgpu') backend?.destroy();
  });

  async function model(name: string): Promise<{ head: Head; shard: Shard }> {
    const reader = readers.get(name)!;
    const head = await Head.load(reader, { backend });
    const shard = await Shard.load(reader, { start: 0, end: head.config.numLayers, backend });
    loaded.push(head, shard);
    return { head, shard };
  }

  const expectClose = (actual: Float32Array, expected: Float32Array) => {
    if (kind === 'cpu') expect(actual).toEqual(expected);
    // Residuals reach the hundreds: the bound is relative to the largest magnitude.
    else expect(maxAbsDiff(actual, expected) / Math.max(...expected.map(Math.abs))).toBeLessThan(1e-5);
  };

  it.each(BATCHED)('%s: batched decode steps equal each session decoded alone', async (name) => {
    const { head, shard } = await model(name);
    const H = head.config.hiddenSize;
    const alone = await Promise.all(PROMPTS.map((i) => greedyRun(head, [shard], golden(name, i).ids, STEPS, `alone${i}`)));
    // Prompts of different lengths: each row of a batch sits at its own position.
    const sessions = await Promise.all(PROMPTS.map(async (i) => {
      const ids = golden(name, i).ids;
      const hidden = await runLayers(head, [shard], ids, 0, `b${i}`);
      return { id: `b${i}`, position: ids.length, token: argmax(await head.logits(hidden, ids.length)), tokens: [] as number[] };
    }));
    for (const s of sessions) s.tokens.push(s.token);
    for (let step = 1; step < STEPS; step++) {
      const items = await Promise.all(sessions.map(async (s) => ({
        hidden: await head.embed(Uint32Array.of(s.token), Uint32Array.of(s.position)),
        position: s.position,
        sessionId: s.id,
      })));
      const out = await shard.forwardBatch(items);
      expect(out.map((o) => o.length)).toEqual(sessions.map(() => H));
      for (const [b, s] of sessions.entries()) {
        expectClose(out[b]!, alone[b]!.hidden[step]!);
        s.token = argmax(await head.logits(out[b]!, 1));
        s.tokens.push(s.token);
        s.position++;
      }
    }
    sessions.forEach((s, b) => {
      expect(s.tokens).toEqual(alone[b]!.tokens);
      expect(s.tokens).toEqual(golden(name, PROMPTS[b]!).greedy.slice(0, STEPS));
      expect(shard.sessionLength(s.id)).toBe(s.position);
    });
  });

  it('a batch of one equals forward() exactly', async () => {
    const { head, shard } = await model('tiny-llama');
    const ids = golden('tiny-llama', 1).ids;
    await runLayers(head, [shard], ids, 0, 'f');
    await runLayers(head, [shard], ids, 0, 'g');
    const x = await head.embed(Uint32Array.of(42), Uint32Array.of(ids.length));
    const single = await shard.forward(x, Uint32Array.of(ids.length), 'f');
    const [batched] = await shard.forwardBatch([{ hidden: x, position: ids.length, sessionId: 'g' }]);
    expect(batched).toEqual(single);
  });

  it('refuses a batch with a bad item and leaves every session usable', async () => {
    const { head, shard } = await model('tiny-llama');
    const H = head.config.hiddenSize;
    const a = golden('tiny-llama', 0).ids;
    const b = golden('tiny-llama', 1).ids;
    await runLayers(head, [shard], a, 0, 'a');
    await runLayers(head, [shard], b, 0, 'b');
    await runLayers(head, [shard], a, 0, 'ra');
    await runLayers(head, [shard], b, 0, 'rb');
    const x = await head.embed(Uint32Array.of(5), Uint32Array.of(a.length));
    const y = await head.embed(Uint32Array.of(9), Uint32Array.of(b.length));
    const nan = y.slice();
    nan[3] = NaN;
    const good = { hidden: x, position: a.length, sessionId: 'a' };
    await failure(shard.forwardBatch([good, { hidden: y, position: b.length + 1, sessionId: 'b' }]), 'ERR_INVALID_ARGUMENT', `expected ${b.length}`, 'cached tokens');
    await failure(shard.forwardBatch([good, { hidden: nan, position: b.length, sessionId: 'b' }]), 'ERR_INVALID_ARGUMENT', 'non-finite');
    await failure(shard.forwardBatch([good, { ...good, hidden: y }]), 'ERR_INVALID_ARGUMENT', 'appears twice');
    await failure(shard.forwardBatch([good, { hidden: y.subarray(1), position: b.length, sessionId: 'b' }]), 'ERR_SHAPE_MISMATCH', `[1, ${H}]`);
    await failure(shard.forwardBatch([good, { hidden: y, position: 1.5, sessionId: 'b' }]), 'ERR_INVALID_ARGUMENT', 'integer');
    await failure(shard.forwardBatch([]), 'ERR_INVALID_ARGUMENT', 'at least one');
    expect(shard.sessionLength('a')).toBe(a.length);
    expect(shard.sessionLength('b')).toBe(b.length);
    const out = await shard.forwardBatch([good, { hidden: y, position: b.length, sessionId: 'b' }]);
    expectClose(out[0]!, await shard.forward(x, Uint32Array.of(a.length), 'ra'));
    expectClose(out[1]!, await shard.forward(y, Uint32Array.of(b.length), 'rb'));
  });
});

describe('a batch whose pass fails while recording', () => {
  it('leaves every session of the batch as it was', async () => {
    const cpu = await createBackend('cpu');
    let failAt = -1;
    let calls = 0;
    // The CPU backend, with attention failing at a chosen call.
    const faulty: Backend = Object.assign(Object.create(cpu) as Backend, {
      run: (record: (ops: Ops) => unknown) => cpu.run((ops) => record(new Proxy(ops, {
        get: (target, key) => (key === 'attention' && calls++ === failAt ? () => { throw new Error('injected'); } : Reflect.get(target, key)),
      })) as never),
    });
    const reader = readers.get('tiny-llama')!;
    const head = await Head.load(reader, { backend: cpu });
    const shard = await Shard.load(reader, { start: 0, end: 4, backend: faulty });
    const ids = [golden('tiny-llama', 0).ids, golden('tiny-llama', 1).ids];
    for (const [i, prompt] of ids.entries()) await runLayers(head, [shard], prompt, 0, `s${i}`);
    const items = await Promise.all(ids.map(async (prompt, i) => ({
      hidden: await head.embed(Uint32Array.of(17 + i), Uint32Array.of(prompt.length)),
      position: prompt.length,
      sessionId: `s${i}`,
    })));
    calls = 0;
    failAt = 3; // layer 1, second session: both sessions have appended keys by then
    await expect(shard.forwardBatch(items)).rejects.toThrow('injected');
    expect(ids.map((_, i) => shard.sessionLength(`s${i}`))).toEqual(ids.map((p) => p.length));
    // A new session in a failed batch is dropped, not left half-filled.
    calls = 0;
    failAt = 1;
    const fresh = { hidden: await head.embed(Uint32Array.of(1), Uint32Array.of(0)), position: 0, sessionId: 'new' };
    await expect(shard.forwardBatch([items[0]!, fresh])).rejects.toThrow('injected');
    expect(shard.sessionIds()).not.toContain('new');
    failAt = -1;
    const out = await shard.forwardBatch(items);
    for (const [i, prompt] of ids.entries()) {
      const alone = await runLayers(head, [shard], [...prompt, 17 + i], 0, `r${i}`);
      expect(out[i]).toEqual(alone.subarray(prompt.length * 64));
    }
    shard.destroy();
    head.destroy();
  });
});
