// A peer's embedding, layers and head in one pass (Shard PassEnds, Head.embedOps / logitsOps, the
// decode batcher's ends): the hidden states between them stay on the device, a step costs one
// submit instead of three, and the logits are bit for bit those of the three passes apart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecodeBatcher } from '../client/grid/decode-batcher.ts';
import { createBackend } from '../client/model/backend/select.ts';
import type { Backend } from '../client/model/backend/types.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import type { GpuContext } from '../kernels/context.ts';
import { fixtures, type FixtureModel } from './fixtures/index.ts';
import { failure, gpuContext, openFixture } from './helpers/model-runtime.ts';

let models: FixtureModel[];
beforeAll(async () => {
  models = (await fixtures()).models;
});

describe.each(['cpu', 'webgpu'] as const)('a stage in one pass on the %s backend', (kind) => {
  let backend: Backend;
  let ctx: GpuContext | undefined;
  const loaded: { destroy(): void }[] = [];

  beforeAll(async () => {
    ctx = kind === 'webgpu' ? await gpuContext() : undefined;
    backend = await createBackend(kind, ctx ? { gpu: ctx } : {});
  });
  afterAll(() => {
    for (const item of loaded) item.destroy();
    if (kind === 'webgpu') backend?.destroy();
  });

  async function model(name: string): Promise<{ head: Head; shard: Shard }> {
    const reader = await openFixture(name);
    const head = await Head.load(reader, { backend });
    const shard = await Shard.load(reader, { start: 0, end: head.config.numLayers, backend });
    loaded.push(head, shard);
    return { head, shard };
  }
  const submits = () => ctx?.counters().submits ?? 0;
  const positionsFrom = (start: number, T: number) => Uint32Array.from({ length: T }, (_, i) => start + i);

  it.each(['tiny-llama', 'tiny-gpt2', 'tiny-qwen3-moe'])('%s: prefill and decode in one pass give the logits of embed, layers and head apart', async (name) => {
    const { head, shard } = await model(name);
    const prompt = models.find((m) => m.name === name)!.golden[0]!.ids;
    const apart = async (ids: Uint32Array, start: number, session: string) => {
      const positions = positionsFrom(start, ids.length);
      return head.logits(await shard.forward(await head.embed(ids, positions), positions, session), ids.length);
    };
    const together = async (ids: Uint32Array, start: number, session: string) => {
      const positions = positionsFrom(start, ids.length);
      const output = head.logitsOps(ids.length);
      return output.finish(await shard.forward(null, positions, session, undefined, { input: head.embedOps(ids, positions)!, output }));
    };
    let ids = Uint32Array.from(prompt);
    let start = 0;
    for (let step = 0; step < 4; step++) {
      const expected = await apart(ids, start, 'apart');
      const before = submits();
      const actual = await together(ids, start, 'together');
      if (ctx) expect(submits() - before).toBe(1);
      expect(actual).toEqual(expected);
      start += ids.length;
      ids = Uint32Array.of(expected.indexOf(Math.max(...expected)));
    }
  });

  it('the decode batcher runs a batch of token ids through embedding, layers and head in one pass', async () => {
    const { head, shard } = await model('tiny-llama');
    const golden = models.find((m) => m.name === 'tiny-llama')!.golden;
    const batcher = new DecodeBatcher();
    const ends = { head, embed: true, logits: true };
    // Prompts prefilled apart; then one decode step of each session, together.
    const last: number[] = [];
    for (const [i, g] of golden.slice(0, 3).entries()) {
      const positions = positionsFrom(0, g.ids.length);
      const logits = await head.logits(await shard.forward(await head.embed(Uint32Array.from(g.ids), positions), positions, `s${i}`), g.ids.length);
      last.push(logits.indexOf(Math.max(...logits)));
    }
    const stepOf = (i: number) => ({ id: last[i]!, position: golden[i]!.ids.length });
    // The same rows through the three passes apart, on sessions of their own, as the reference.
    for (const [i, g] of golden.slice(0, 3).entries()) {
      const positions = positionsFrom(0, g.ids.length);
      await shard.forward(await head.embed(Uint32Array.from(g.ids), positions), positions, `r${i}`);
    }
    const steps = [0, 1, 2].map(stepOf);
    const hidden = await head.embed(Uint32Array.from(steps, (s) => s.id), Uint32Array.from(steps, (s) => s.position));
    const H = head.config.hiddenSize;
    const rows = await shard.forwardBatch(steps.map((s, i) => ({ hidden: hidden.subarray(i * H, (i + 1) * H), position: s.position, sessionId: `r${i}` })));
    const stacked = new Float32Array(3 * H);
    rows.forEach((r, i) => stacked.set(r, i * H));
    const expected = await head.logits(stacked, 3, { all: true });

    const before = submits();
    const outs = await Promise.all(steps.map((s, i) => batcher.step(shard, { start: 0, end: shard.end }, { ids: Uint32Array.of(s.id) }, s.position, `s${i}`, 1, ends)));
    expect(batcher.stats.largest).toBe(3);
    if (ctx) expect(submits() - before).toBe(1);
    const V = head.config.vocabSize;
    outs.forEach((o, i) => expect(o).toEqual(expected.subarray(i * V, (i + 1) * V)));
  });

  it('a bad token id fails its own step with a named error; the others of its batch are answered', async () => {
    const { head, shard } = await model('tiny-llama');
    const batcher = new DecodeBatcher();
    const ends = { head, embed: true, logits: true };
    const V = head.config.vocabSize;
    const good = batcher.step(shard, { start: 0, end: shard.end }, { ids: Uint32Array.of(5) }, 0, 'good', 1, ends);
    const bad = batcher.step(shard, { start: 0, end: shard.end }, { ids: Uint32Array.of(V + 7) }, 0, 'bad', 1, ends);
    await failure(bad, 'ERR_INVALID_ARGUMENT', String(V + 7));
    const expected = await head.logits(await shard.forward(await head.embed(Uint32Array.of(5), Uint32Array.of(0)), Uint32Array.of(0), 'ref'), 1);
    expect(await good).toEqual(expected);
    // A step whose input does not fit its lane is refused by name.
    await failure(batcher.step(shard, { start: 0, end: shard.end }, { hidden: new Float32Array(head.config.hiddenSize) }, 0, 'x', 1, ends), 'ERR_INVALID_ARGUMENT', 'token id');
    await failure(shard.forward(null, Uint32Array.of(0), 'y'), 'ERR_INVALID_ARGUMENT', 'either hidden states or an embedding');
  });

  // WebGPU alone binds groups.
  if (kind === 'webgpu') it('decode steps past the first few make no bind groups: per-step values live in the caches\' own uniforms', async () => {
    const { head, shard } = await model('tiny-llama');
    const step = async (id: number, position: number) => {
      const positions = Uint32Array.of(position);
      const output = head.logitsOps(1);
      const logits = output.finish(await shard.forward(null, positions, 'groups', undefined, { input: head.embedOps(Uint32Array.of(id), positions)!, output }));
      return logits.indexOf(Math.max(...logits));
    };
    let id = 5;
    for (let p = 0; p < 3; p++) id = await step(id, p);
    const before = ctx!.counters();
    for (let p = 3; p < 13; p++) id = await step(id, p);
    const made = ctx!.counters().bindGroups - before.bindGroups;
    // Each step binds ~28 groups; only a split of attention over a longer cache may need a new one.
    expect(made).toBeLessThanOrEqual(2);
  });

  it('Gemma embeds apart (its scale is applied on the CPU); its head still ends the pass', async () => {
    const { head } = await model('tiny-gemma');
    expect(head.embedsOnDevice).toBe(false);
    expect(head.embedOps(Uint32Array.of(1), Uint32Array.of(0))).toBeNull();
  });
});
