// The client's head batcher: logits of many sessions waiting at once run as one pass and equal
// each session's own Head.logits bit for bit on the CPU; a malformed call fails alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Head } from '../client/model/head.ts';
import { HeadBatcher } from '../client/model/head-batcher.ts';
import { AigridError } from '../protocol/index.ts';
import { openFixture } from './helpers/model-runtime.ts';
import { mulberry32 } from './helpers/random.ts';

describe('HeadBatcher', () => {
  let head: Head;
  beforeAll(async () => {
    head = await Head.load(await openFixture('tiny-llama'), { backend: 'cpu' });
  });
  afterAll(() => head?.destroy());

  const hiddenOf = (rand: () => number, tokens: number) =>
    Float32Array.from({ length: tokens * head.config.hiddenSize }, () => rand() * 4 - 2);

  it('runs concurrent calls as one pass with the logits each would get alone', async () => {
    const rand = mulberry32(9);
    const batcher = new HeadBatcher(head);
    const inputs = Array.from({ length: 7 }, (_, i) => ({ hidden: hiddenOf(rand, 1 + (i % 3)), tokens: 1 + (i % 3) }));
    const alone: Float32Array[] = [];
    for (const x of inputs) alone.push(await head.logits(x.hidden, x.tokens));
    const batched = await Promise.all(inputs.map((x) => batcher.logits(x.hidden, x.tokens)));
    batched.forEach((logits, i) => expect(logits).toEqual(alone[i]));
    expect(batcher.stats).toEqual({ passes: 1, rows: 7, largest: 7 });
    // A lone call is a pass of one.
    expect(await batcher.logits(inputs[0]!.hidden, inputs[0]!.tokens)).toEqual(alone[0]);
    expect(batcher.stats.passes).toBe(2);
  });

  it('calls made after a batch started run in a later batch', async () => {
    const rand = mulberry32(10);
    const batcher = new HeadBatcher(head);
    const first = batcher.logits(hiddenOf(rand, 1), 1);
    // The first batch starts on the next task (setImmediate in Node); ours comes after it. (A
    // setTimeout 0 here could fire first on a loaded machine and let the later calls join it.)
    await new Promise((r) => setImmediate(r));
    const later = [batcher.logits(hiddenOf(rand, 1), 1), batcher.logits(hiddenOf(rand, 1), 1)];
    await Promise.all([first, ...later]);
    expect(batcher.stats.rows).toBe(3);
    expect(batcher.stats.largest).toBeLessThanOrEqual(2);
  });

  it('a malformed call is refused alone; the others get their logits', async () => {
    const rand = mulberry32(11);
    const batcher = new HeadBatcher(head);
    const good = hiddenOf(rand, 1);
    const want = await head.logits(good, 1);
    const [ok, bad] = await Promise.allSettled([batcher.logits(good, 1), batcher.logits(new Float32Array(5), 1)]);
    expect(ok.status === 'fulfilled' && ok.value).toEqual(want);
    expect(bad.status).toBe('rejected');
    expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(AigridError);
  });

  it('embeds through the head', async () => {
    const batcher = new HeadBatcher(head);
    const ids = Uint32Array.of(1, 2, 3);
    const pos = Uint32Array.of(0, 1, 2);
    expect(await batcher.embed(ids, pos)).toEqual(await head.embed(ids, pos));
  });
});
