// A model served by Node peers over WebRTC: split over three peers it produces exactly the golden
// greedy tokens (equal to one local shard of every layer), many generations run at once on the
// same peers (two models at a time), and a WebGPU peer in the chain gives the same tokens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explicitRoutes, RemoteChain, type FailoverEvent, type GridPeer, type ServingStatus } from '../client/grid/index.ts';
import { decodeActivation, ServingFrame } from '../protocol/index.ts';
import { Shard } from '../client/model/shard.ts';
import { GOLDEN_STEPS } from './fixtures/index.ts';
import { startGridNet, route, type GridNet } from './helpers/grid-net.ts';
import { gpuContext, greedyRun, openFixture } from './helpers/model-runtime.ts';
import { waitFor } from './helpers/wait.ts';

let net: GridNet;

beforeAll(async () => {
  net = await startGridNet();
});
afterAll(async () => {
  await net?.close();
});

async function serve(peers: GridPeer[], name: string, cuts: number[]): Promise<void> {
  const spec = await net.spec(name);
  await Promise.all(peers.map((p, i) => p.assign(spec, cuts[i]!, cuts[i + 1]!)));
}

describe('serving across Node peers (CPU)', () => {
  it('a model split over three peers gives the golden tokens, with prefill in chunks', async () => {
    const [a, b, c] = await Promise.all(['split-a', 'split-b', 'split-c'].map((id) => net.peer('split', id)));
    const statuses: ServingStatus[] = [];
    a!.on('status', (s) => statuses.push(s));
    await serve([a!, b!, c!], 'tiny-llama', [0, 1, 3, 4]);
    // Each peer downloaded its own layers over HTTP Range.
    expect(net.files.requests.some((r) => r.status === 206)).toBe(true);
    expect(statuses.map((s) => s.state)).toEqual(['loading', 'ready']);

    const mesh = await net.join('split', 'split-client');
    const chain = await net.chain(mesh, 'tiny-llama', [route([a!, 0, 1], [b!, 1, 3], [c!, 3, 4])], { chunkTokens: 16 });
    const prefillFrames: number[] = [];
    a!.mesh.on('frame', (_from, f) => {
      const tokens = f.type === ServingFrame.forward ? decodeActivation(f.payload).header.tokens : 0;
      if (tokens > 1) prefillFrames.push(tokens);
    });
    const head = await net.head('tiny-llama');
    const model = await net.model('tiny-llama');
    for (const golden of model.golden) {
      const result = await chain.generate(head, golden.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 });
      expect(result.tokens, golden.prompt).toEqual(golden.greedy);
    }
    // Prompts of 2, 10, 19 and 67 tokens went in frames of at most 16 tokens.
    expect(model.golden.map((g) => g.ids.length)).toEqual([2, 10, 19, 67]);
    expect(prefillFrames).toEqual([2, 10, 16, 3, 16, 16, 16, 16, 3]);

    // The single-peer baseline: local Head + Shard [0, 4) gives the same tokens.
    const whole = await Shard.load(await openFixture('tiny-llama'), { start: 0, end: 4, backend: 'cpu' });
    const local = await greedyRun(head, [whole], model.golden[2]!.ids, GOLDEN_STEPS, 'local');
    expect(local.tokens).toEqual(model.golden[2]!.greedy);
    whole.destroy();

    await waitFor(() => [a, b, c].every((p) => p!.sessionCount === 0), 5000, 'sessions released on every hop');
    expect(a!.status()[0]).toMatchObject({ state: 'ready', tokensServed: expect.any(Number) });
    expect(a!.status()[0]!.tokensServed).toBe(model.golden.reduce((n, g) => n + g.ids.length + GOLDEN_STEPS - 1, 0));
  });

  it('eight generations at once over two models served by the same peers', async () => {
    const peers = await Promise.all(['many-a', 'many-b', 'many-c'].map((id) => net.peer('many', id)));
    await serve(peers, 'tiny-llama', [0, 2, 3, 4]);
    await serve(peers, 'tiny-smollm2', [0, 1, 2, 3]);
    const mesh = await net.join('many', 'many-client');
    const chains = {
      'tiny-llama': await net.chain(mesh, 'tiny-llama', [route([peers[0]!, 0, 2], [peers[1]!, 2, 3], [peers[2]!, 3, 4])]),
      'tiny-smollm2': await net.chain(mesh, 'tiny-smollm2', [route([peers[0]!, 0, 1], [peers[1]!, 1, 2], [peers[2]!, 2, 3])]),
    };
    const jobs = await Promise.all(
      (['tiny-llama', 'tiny-smollm2'] as const).map(async (name) => {
        const head = await net.head(name);
        return (await net.model(name)).golden.map((g) => ({ name, head, g }));
      }),
    );
    let inFlight = 0;
    let most = 0;
    const results = await Promise.all(
      jobs.flat().map(async ({ name, head, g }) => {
        inFlight++;
        most = Math.max(most, inFlight);
        const r = await chains[name].generate(head, g.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 });
        inFlight--;
        return { expected: g.greedy, tokens: r.tokens };
      }),
    );
    expect(results).toHaveLength(8);
    for (const r of results) expect(r.tokens).toEqual(r.expected);
    expect(most).toBe(8);
    // Continuous batching: decode steps of sessions waiting at a peer ran together.
    for (const p of peers) {
      const stats = p.batchStats;
      expect(stats.largest).toBeGreaterThan(1);
      expect(stats.steps).toBeGreaterThan(stats.passes);
    }
    await waitFor(() => peers.every((p) => p.sessionCount === 0), 5000, 'sessions released');
  });
});

describe('two models with the same cut on the same peers', () => {
  it('decode steps of both run concurrently to the golden tokens (lanes are per shard, not per range)', async () => {
    const peers = await Promise.all(['cut-a', 'cut-b'].map((id) => net.peer('cut', id)));
    // The same checkpoint served under two model ids: two shards per peer over the same layers.
    const first = await net.spec('tiny-llama');
    const twin = { ...first, modelId: 'tiny-llama-twin' };
    for (const spec of [first, twin]) await Promise.all([peers[0]!.assign(spec, 0, 2), peers[1]!.assign(spec, 2, 4)]);
    const mesh = await net.join('cut', 'cut-client');
    const hops = route([peers[0]!, 0, 2], [peers[1]!, 2, 4]);
    const failovers: FailoverEvent[] = [];
    const chains = [first, twin].map(
      (spec) =>
        new RemoteChain({ mesh, modelId: spec.modelId, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, routes: explicitRoutes([hops]), timeoutMs: 5000, onFailover: (e) => failovers.push(e) }),
    );
    const head = await net.head('tiny-llama');
    const { golden } = await net.model('tiny-llama');
    const jobs = chains.flatMap((chain) => [...golden, ...golden, ...golden].map((g) => ({ chain, g })));
    const results = await Promise.all(jobs.map(async ({ chain, g }) => ({ expected: g.greedy, tokens: (await chain.generate(head, g.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 })).tokens })));
    for (const chain of chains) chain.close();
    expect(results).toHaveLength(24);
    for (const r of results) expect(r.tokens).toEqual(r.expected);
    // No step waited for a timeout (a stranded step would be replayed after one).
    expect(failovers).toEqual([]);
    // Steps of each model were batched with each other's sessions of that model only.
    for (const p of peers) expect(p.batchStats.largest).toBeGreaterThan(1);
  });
});

describe('a WebGPU peer in the chain', () => {
  it('tiny-qwen2 over a WebGPU peer and a CPU peer gives the golden tokens', async () => {
    const gpu = await net.peer('gpu', 'gpu-a', { backend: 'webgpu', gpu: await gpuContext() });
    const cpu = await net.peer('gpu', 'gpu-b');
    await serve([gpu, cpu], 'tiny-qwen2', [0, 1, 2]);
    const mesh = await net.join('gpu', 'gpu-client');
    const chain = await net.chain(mesh, 'tiny-qwen2', [route([gpu, 0, 1], [cpu, 1, 2])]);
    const head = await net.head('tiny-qwen2');
    for (const g of (await net.model('tiny-qwen2')).golden.slice(1, 3)) {
      const result = await chain.generate(head, g.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 });
      expect(result.tokens, g.prompt).toEqual(g.greedy);
    }
  });
});
