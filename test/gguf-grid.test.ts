// A GGUF file served by the grid: peers load their layers from the file over HTTP Range and serve
// it; the client, holding the head from the same file, gets the tokens one process computes from it.
import { relative, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemoteChain, signalingRoutes } from '../client/grid/index.ts';
import { openModelNode } from '../client/model/checkpoint/node.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import type { Mesh } from '../client/mesh/index.ts';
import type { ModelCoverage } from '../protocol/index.ts';
import { FIXTURE_DIR } from './fixtures/index.ts';
import { ggufFixture } from './helpers/gguf-fixtures.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { greedyRun } from './helpers/model-runtime.ts';
import { waitFor } from './helpers/wait.ts';

const NETWORK = 'gguf-served';
let net: GridNet;
let client: Mesh;
let head: Head;

beforeAll(async () => {
  await ggufFixture('tiny-llama', 'Q8_0');
  net = await startGridNet();
  await Promise.all([net.peer(NETWORK, 'gguf-one'), net.peer(NETWORK, 'gguf-two')]);
  client = await net.join(NETWORK, 'gguf-client', 0);
  head = await Head.load(await openModelNode(await ggufFixture('tiny-llama', 'Q8_0')), { backend: 'cpu' });
});

afterAll(async () => {
  head?.destroy();
  await net?.close();
});

describe('a GGUF file on the grid', () => {
  it('peers serve a Q8_0 file token for token as one process', async () => {
    const base = await net.spec('tiny-llama');
    const spec = { ...base, modelId: 'tiny-llama-q8', source: `${net.files.url}/${relative(FIXTURE_DIR, await ggufFixture('tiny-llama', 'Q8_0')).split(sep).join('/')}`, replication: 2 };
    let coverage: ModelCoverage | undefined;
    client.signaling.on('models', (models) => (coverage = models.find((m) => m.model.modelId === spec.modelId)));
    client.signaling.send({ type: 'serve', model: spec });
    await waitFor(() => Boolean(coverage?.ready.every((r) => r >= 1)), 30_000, 'every layer ready');

    const local = await Shard.load(await openModelNode(await ggufFixture('tiny-llama', 'Q8_0')), { start: 0, end: spec.numLayers, backend: 'cpu' });
    const g = (await net.model('tiny-llama')).golden[1]!;
    const alone = await greedyRun(head, [local], g.ids, g.greedy.length, 'alone');
    local.destroy();

    const chain = new RemoteChain({ mesh: client, modelId: spec.modelId, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, routes: signalingRoutes(client.signaling, spec.modelId) });
    const result = await chain.generate(head, g.ids, { maxTokens: g.greedy.length, temperature: 0 });
    expect(result.tokens).toEqual(alone.tokens);
    chain.close();
  });
});
