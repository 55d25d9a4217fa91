// A route may enter a peer mid-range: Shard.forward over a sub-range of its layers equals a shard
// loaded with exactly those layers, and each session keeps its own sub-range's cache.
import { beforeAll, describe, expect, it } from 'vitest';
import { Head, Shard } from '../client/model/index.ts';
import { fixtures } from './fixtures/index.ts';
import { openFixture } from './helpers/model-runtime.ts';

let head: Head;
let whole: Shard;
let upper: Shard;

beforeAll(async () => {
  await fixtures();
  const reader = await openFixture('tiny-llama');
  head = await Head.load(reader, { backend: 'cpu' });
  whole = await Shard.load(reader, { start: 0, end: 4, backend: 'cpu' });
  upper = await Shard.load(reader, { start: 2, end: 4, backend: 'cpu' });
});

describe('Shard.forward over a sub-range', () => {
  it('matches a shard of exactly those layers, prefill and decode', async () => {
    const tokens = Uint32Array.of(5, 9, 12, 7);
    const positions = Uint32Array.of(0, 1, 2, 3);
    const lower = await whole.forward(await head.embed(tokens, positions), positions, 'lower', { start: 0, end: 2 });
    const a = await whole.forward(lower, positions, 'upper-in-whole', { start: 2, end: 4 });
    const b = await upper.forward(lower, positions, 'upper-alone');
    expect(Array.from(a)).toEqual(Array.from(b));
    const next = Uint32Array.of(4);
    const h = await head.embed(Uint32Array.of(3), next);
    const low2 = await whole.forward(h, next, 'lower', { start: 0, end: 2 });
    expect(Array.from(await whole.forward(low2, next, 'upper-in-whole', { start: 2, end: 4 }))).toEqual(
      Array.from(await upper.forward(low2, next, 'upper-alone')),
    );
  });

  it('refuses a range outside the shard', async () => {
    const positions = Uint32Array.of(0);
    const h = await head.embed(Uint32Array.of(1), positions);
    await expect(upper.forward(h, positions, 'x', { start: 1, end: 3 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});
