// A model split across shards computes what one shard of every layer computes: the same tokens,
// and on the CPU the same hidden states bit for bit. Each boundary's hidden state matches the
// float64 reference's at that layer boundary, and CPU and WebGPU shards can be mixed in one chain.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackend } from '../client/model/backend/select.ts';
import type { Backend } from '../client/model/backend/types.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import type { CheckpointReader } from '../client/model/checkpoint/reader.ts';
import type { FixtureModel } from './fixtures/index.ts';
import { fixtures, GOLDEN_STEPS, loadReference, ReferenceSession } from './fixtures/index.ts';
import { gpuContext, greedyRun, maxAbsDiff, openFixture, runLayers } from './helpers/model-runtime.ts';

let cpu: Backend;
let gpu: Backend;
let models: FixtureModel[];
const readers = new Map<string, CheckpointReader>();
const loaded: { destroy(): void }[] = [];

beforeAll(async () => {
  models = (await fixtures()).models;
  cpu = await createBackend('cpu');
  gpu = await createBackend('webgpu', { gpu: await gpuContext() });
});
afterAll(() => {
  for (const item of loaded) item.destroy();
  gpu?.destroy();
});

async function reader(name: string): Promise<CheckpointReader> {
  if (!readers.has(name)) readers.set(name, await openFixture(name));
  return readers.get(name)!;
}

async function head(name: string, backend: Backend): Promise<Head> {
  const h = await Head.load(await reader(name), { backend });
  loaded.push(h);
  return h;
}

/** Shards over consecutive ranges cut at `cuts`, e.g. [0, 2, 4] -> [0, 2) and [2, 4). */
async function chain(name: string, cuts: number[], backends: Backend[]): Promise<Shard[]> {
  const shards: Shard[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    shards.push(await Shard.load(await reader(name), { start: cuts[i]!, end: cuts[i + 1]!, backend: backends[i % backends.length]! }));
  }
  loaded.push(...shards);
  return shards;
}

const golden = (name: string, i: number) => models.find((m) => m.name === name)!.golden[i]!;

describe('CPU backend', () => {
  it('tiny-llama [0,2) + [2,4) and [0,1) + [1,3) + [3,4) equal [0,4) bit for bit', async () => {
    const h = await head('tiny-llama', cpu);
    const whole = await greedyRun(h, await chain('tiny-llama', [0, 4], [cpu]), golden('tiny-llama', 2).ids, GOLDEN_STEPS, 's');
    for (const cuts of [[0, 2, 4], [0, 1, 3, 4]]) {
      const split = await greedyRun(h, await chain('tiny-llama', cuts, [cpu]), golden('tiny-llama', 2).ids, GOLDEN_STEPS, 's');
      expect(split.tokens).toEqual(whole.tokens);
      expect(split.hidden).toEqual(whole.hidden);
    }
    expect(whole.tokens).toEqual(golden('tiny-llama', 2).greedy);
  });

  it('each boundary hidden state matches the reference at that layer boundary', async () => {
    const ids = golden('tiny-smollm2', 3).ids;
    const observed = new Map<string, Float64Array>();
    new ReferenceSession(await loadReference('tiny-smollm2'), (b, p, hidden) => observed.set(`${b}/${p}`, hidden.slice())).append(ids);
    const h = await head('tiny-smollm2', cpu);
    const shards = await chain('tiny-smollm2', [0, 1, 2, 3], [cpu]);
    const positions = Uint32Array.from(ids, (_, i) => i);
    let hidden = await h.embed(Uint32Array.from(ids), positions);
    const H = h.config.hiddenSize;
    for (const [boundary, shard] of [undefined, ...shards].entries()) {
      if (shard) hidden = await shard.forward(hidden, positions, 'hooks');
      const expected = ids.flatMap((_, p) => [...observed.get(`${boundary}/${p}`)!]);
      // Residual magnitudes reach the hundreds; relative f32 error stays near 1e-6.
      const scale = Math.max(...expected.map(Math.abs));
      expect(maxAbsDiff(hidden, expected) / scale, `boundary ${boundary}`).toBeLessThan(1e-5);
      expect(hidden.length).toBe(ids.length * H);
    }
  });
});

describe('WebGPU backend', () => {
  it.each([
    ['tiny-llama', [0, 2, 4]],
    ['tiny-gpt2', [0, 1, 2]],
  ] as const)('%s split at %j gives the tokens of one shard', async (name, cuts) => {
    const h = await head(name, gpu);
    const ids = golden(name, 1).ids;
    const whole = await greedyRun(h, await chain(name, [0, cuts.at(-1)!], [gpu]), ids, GOLDEN_STEPS, 's');
    const split = await greedyRun(h, await chain(name, [...cuts], [gpu]), ids, GOLDEN_STEPS, 's');
    expect(whole.tokens).toEqual(golden(name, 1).greedy);
    expect(split.tokens).toEqual(whole.tokens);
  });

  it('a chain mixing CPU and WebGPU shards gives the golden tokens', async () => {
    const h = await head('tiny-qwen2', cpu);
    const run = await greedyRun(h, await chain('tiny-qwen2', [0, 1, 2], [gpu, cpu]), golden('tiny-qwen2', 0).ids, GOLDEN_STEPS, 'mixed');
    expect(run.tokens).toEqual(golden('tiny-qwen2', 0).greedy);
  });
});
