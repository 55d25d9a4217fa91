// The whole serving flow through the coordinator: a client asks the network to serve a model too
// large for any one peer; the coordinator places it on four peers by their budgets (replication 2);
// peers load their layers over HTTP Range and report ready; the client takes routes from the
// coordinator and generates the golden tokens, also when a peer dies mid-generation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridPeer, meshRoutes, RemoteChain, RemoteModel, signalingRoutes } from '../client/grid/index.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import type { Mesh } from '../client/mesh/index.ts';
import type { ModelCoverage, ModelSpec } from '../protocol/index.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';

const NETWORK = 'coordinated';
const MB = 1024 * 1024;

let net: GridNet;
const peers: GridPeer[] = [];
let client: Mesh;
let spec: ModelSpec;

/** Peers offer room for two of tiny-llama's four layers: no peer can hold the model alone. */
const mesh = (peerId: string, memoryBudgetMB = 2, network = NETWORK) => net.join(network, peerId, memoryBudgetMB);

beforeAll(async () => {
  net = await startGridNet();
  for (const id of ['peer-a', 'peer-b', 'peer-c', 'peer-d']) {
    peers.push(new GridPeer({ mesh: await mesh(id), backend: 'cpu', open: checkpointOpener(openCheckpointNode, { cache: false }) }));
  }
  client = await mesh('the-client', 0); // a pure client offers no memory
  spec = { ...(await net.spec('tiny-llama')), layerBytes: MB, replication: 2 };
});

afterAll(async () => {
  for (const p of peers) p.close();
  await net.close();
});

describe('serving through the coordinator', () => {
  it('places a model larger than any peer on the group, and the group serves the golden tokens', async () => {
    let coverage: ModelCoverage | undefined;
    client.signaling.on('models', (models) => (coverage = models.find((m) => m.model.modelId === spec.modelId)));
    client.signaling.send({ type: 'serve', model: spec });
    await waitFor(() => Boolean(coverage && coverage.ready.every((r) => r >= 2)), 30_000, 'every layer ready on two peers').catch((err) => {
      throw new Error(`${(err as Error).message}; coverage ${JSON.stringify(coverage && { assigned: coverage.assigned, ready: coverage.ready })}; peers ${JSON.stringify(peers.map((p) => p.status()))}`);
    });
    const held = peers.map((p) => p.status()[0]).filter(Boolean);
    expect(held).toHaveLength(4);
    for (const s of held) expect(s!.end - s!.start).toBeLessThanOrEqual(2);
    // The HTTP view says which peer serves which layers, with what each last reported.
    const view = (await (await fetch(`${net.server.httpUrl}/api/networks/${NETWORK}`)).json()) as { serving: { peerId: string; start: number; end: number; state: string }[] };
    expect(view.serving.map((v) => [v.peerId, v.start, v.end, v.state]).sort()).toEqual(peers.map((p) => [p.peerId, p.status()[0]!.start, p.status()[0]!.end, 'ready']).sort());

    const chain = new RemoteChain({
      mesh: client,
      modelId: spec.modelId,
      numLayers: spec.numLayers,
      hiddenSize: spec.hiddenSize,
      routes: meshRoutes(client, spec.modelId),
    });
    const head = await net.head('tiny-llama');
    const model = await net.model('tiny-llama');
    for (const g of model.golden.slice(0, 2)) {
      const result = await chain.generate(head, g.ids, { maxTokens: g.greedy.length, temperature: 0, sessionId: `s-${g.ids.length}` });
      expect(result.tokens).toEqual(g.greedy);
    }

    // A peer on the route dies mid-generation: the client routes around it and replays.
    const g = model.golden[2]!;
    let killed = false;
    const result = await chain.generate(head, g.ids, {
      maxTokens: g.greedy.length,
      temperature: 0,
      sessionId: 'failover',
      onToken: (_t, step) => {
        if (step !== 5 || killed) return;
        killed = true;
        const victim = chain.routeOf('failover')?.[0]?.peerId;
        const index = peers.findIndex((p) => p.peerId === victim);
        peers[index]!.close();
        peers[index]!.mesh.close();
      },
    });
    expect(killed).toBe(true);
    expect(result.tokens).toEqual(g.greedy);
    chain.close();
  });

  it('serves a light client: the peers at the ends hold embedding and head, the client only ids', async () => {
    const network = 'coordinated-light';
    for (const id of ['light-a', 'light-b', 'light-c']) {
      peers.push(new GridPeer({ mesh: await mesh(id, 2, network), backend: 'cpu', open: checkpointOpener(openCheckpointNode, { cache: false }) }));
    }
    const lightClient = await mesh('light-client', 0, network);
    // The head parts' bytes are declared (peers refuse a light spec that understates them).
    const light = { ...spec, modelId: 'tiny-llama-light', light: true, headBytes: MB, replication: 1 };
    let coverage: ModelCoverage | undefined;
    lightClient.signaling.on('models', (models) => (coverage = models.find((m) => m.model.modelId === light.modelId)));
    lightClient.signaling.send({ type: 'serve', model: light });
    await waitFor(() => Boolean(coverage?.ready.every((r) => r >= 1)), 30_000, 'light model ready');
    const chain = new RemoteModel({
      mesh: lightClient,
      modelId: light.modelId,
      numLayers: light.numLayers,
      hiddenSize: light.hiddenSize,
      routes: signalingRoutes(lightClient.signaling, light.modelId),
      vocabSize: 256,
    });
    const g = (await net.model('tiny-llama')).golden[3]!;
    const result = await chain.generate(g.ids, { maxTokens: g.greedy.length, temperature: 0 });
    expect(result.tokens).toEqual(g.greedy);
    chain.close();
  });
});
