// The generation loop over a local layer chain: greedy output equals the goldens (which equal
// @huggingface/transformers on the same weights), stop tokens, max tokens, abort, seeded sampling.
import { beforeAll, describe, expect, it } from 'vitest';
import { generate, Head, Shard, withHead, type LayerChain } from '../client/model/index.ts';
import { fixtures, type FixtureModel } from './fixtures/index.ts';
import { openFixture } from './helpers/model-runtime.ts';

let head: Head;
let shards: Shard[];
let model: FixtureModel;

const chain: LayerChain = async (hidden, positions, sessionId) => {
  for (const shard of shards) hidden = await shard.forward(hidden, positions, sessionId);
  return hidden;
};

beforeAll(async () => {
  model = (await fixtures()).models.find((m) => m.name === 'tiny-llama')!;
  const reader = await openFixture('tiny-llama');
  head = await Head.load(reader, { backend: 'cpu' });
  shards = [await Shard.load(reader, { start: 0, end: 2, backend: 'cpu' }), await Shard.load(reader, { start: 2, end: 4, backend: 'cpu' })];
});

describe('generate over a chain of two shards (CPU backend)', () => {
  it('produces the golden greedy tokens and streams each one', async () => {
    for (const [i, g] of model.golden.slice(0, 2).entries()) {
      const streamed: number[] = [];
      const result = await generate(withHead(head, chain), g.ids, {
        maxTokens: g.greedy.length,
        temperature: 0,
        sessionId: `golden-${i}`,
        onToken: (t) => streamed.push(t),
      });
      expect(result.tokens).toEqual(g.greedy);
      expect(streamed).toEqual(g.greedy);
      expect(result.finishReason).toBe('length');
      for (const shard of shards) shard.release(`golden-${i}`);
    }
  });

  it('stops on a stop token and on abort', async () => {
    const g = model.golden[0]!;
    const stopAt = g.greedy[5]!;
    const stopped = await generate(withHead(head, chain), g.ids, { maxTokens: 32, temperature: 0, stopTokens: [stopAt], sessionId: 'stop' });
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.tokens).toEqual(g.greedy.slice(0, g.greedy.indexOf(stopAt) + 1));
    const controller = new AbortController();
    const aborted = await generate(withHead(head, chain), g.ids, {
      maxTokens: 32,
      temperature: 0,
      sessionId: 'abort',
      signal: controller.signal,
      onToken: (_t, step) => step === 2 && controller.abort(),
    });
    expect(aborted.finishReason).toBe('abort');
    expect(aborted.tokens).toHaveLength(3);
  });

  it('repeats a seeded sampled generation exactly and differs with another seed', async () => {
    const g = model.golden[1]!;
    const run = (seed: number, id: string) =>
      generate(withHead(head, chain), g.ids, { maxTokens: 12, temperature: 1.5, topK: 20, topP: 0.95, seed, sessionId: id });
    const a = await run(7, 'seed-a');
    const b = await run(7, 'seed-b');
    const c = await run(8, 'seed-c');
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
  });

  it('rejects an empty prompt and a bad maxTokens', async () => {
    await expect(generate(withHead(head, chain), [], { maxTokens: 4, sessionId: 'x' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(generate(withHead(head, chain), [1], { maxTokens: 0, sessionId: 'x' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});
