// Replicated placement with overlapping ranges, through the real coordinator: three peers with
// small budgets (3, 3 and 2 layers of tiny-llama's 4) and replication 2 get ranges that overlap
// ([0, 3), [1, 4), [0, 2)), so the coordinator's routes enter peers inside their ranges. Every
// generation, many at once and one across a killed peer, gives the golden tokens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridPeer, meshRoutes, RemoteChain, type FailoverEvent } from '../client/grid/index.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import type { Hop, ModelCoverage, ModelSpec } from '../protocol/index.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';

const NETWORK = 'overlap';
const MB = 1024 * 1024;

let net: GridNet;
const peers: GridPeer[] = [];

beforeAll(async () => {
  net = await startGridNet();
  for (const [id, budgetMB] of [['over-a', 3], ['over-b', 3], ['over-c', 2]] as const) {
    peers.push(new GridPeer({ mesh: await net.join(NETWORK, id, budgetMB), backend: 'cpu', open: checkpointOpener(openCheckpointNode, { cache: false }) }));
  }
});
afterAll(async () => {
  for (const p of peers) p.close();
  await net?.close();
});

describe('overlapping replicated ranges', () => {
  it('routes that enter peers mid-range give the golden tokens, also across a failover', async () => {
    const client = await net.join(NETWORK, 'over-client', 0);
    const spec: ModelSpec = { ...(await net.spec('tiny-llama')), layerBytes: MB, replication: 2 };
    let coverage: ModelCoverage | undefined;
    client.signaling.on('models', (models) => (coverage = models.find((m) => m.model.modelId === spec.modelId)));
    client.signaling.send({ type: 'serve', model: spec });
    await waitFor(() => Boolean(coverage && coverage.ready.every((r, i) => r === coverage!.assigned[i] && r > 0)), 30_000, 'every assigned range ready');
    const held = new Map(peers.map((p) => [p.peerId, p.status()[0]!]));
    // Which 3-layer peer starts at 0 goes by how their ids sort; the 2-layer one holds [0, 2).
    expect([...held.values()].map((s) => [s.start, s.end]).sort()).toEqual([[0, 2], [0, 3], [1, 4]]);
    expect([held.get(peers[2]!.peerId)!.start, held.get(peers[2]!.peerId)!.end]).toEqual([0, 2]);

    const failovers: FailoverEvent[] = [];
    const chain = new RemoteChain({
      mesh: client,
      modelId: spec.modelId,
      numLayers: spec.numLayers,
      hiddenSize: spec.hiddenSize,
      routes: meshRoutes(client, spec.modelId),
      onFailover: (e) => failovers.push(e),
    });
    const routes: Hop[][] = [];
    const head = await net.head('tiny-llama');
    const { golden } = await net.model('tiny-llama');
    // Eight generations at once (each golden prompt twice).
    const results = await Promise.all(
      [...golden, ...golden].map(async (g, i) => {
        const sessionId = `many-${i}`;
        const result = await chain.generate(head, g.ids, { maxTokens: g.greedy.length, temperature: 0, sessionId, onToken: () => routes.push(chain.routeOf(sessionId)!) });
        return { tokens: result.tokens, expected: g.greedy };
      }),
    );
    for (const r of results) expect(r.tokens).toEqual(r.expected);
    expect(failovers).toEqual([]);
    // Some hop was entered inside the range its peer holds.
    const midRange = routes.flat().filter((h) => h.start > held.get(h.peerId)!.start);
    expect(midRange.length).toBeGreaterThan(0);

    // The first hop of a running generation dies: the next route has to enter a peer mid-range.
    const g = golden[3]!;
    let victim: string | undefined;
    const later: Hop[][] = [];
    const result = await chain.generate(head, g.ids, {
      maxTokens: g.greedy.length,
      temperature: 0,
      sessionId: 'failover',
      onToken: (_t, step) => {
        if (victim) return void later.push(chain.routeOf('failover')!);
        if (step !== 4) return;
        victim = chain.routeOf('failover')![0]!.peerId;
        const peer = peers.find((p) => p.peerId === victim)!;
        peer.close();
        peer.mesh.close();
      },
    });
    chain.close();
    expect(result.tokens).toEqual(g.greedy);
    expect(failovers.map((e) => e.blame)).toEqual([victim]);
    const rerouted = later.at(-1)!;
    expect(rerouted.some((h) => h.peerId === victim)).toBe(false);
    expect(rerouted.some((h) => h.start > held.get(h.peerId)!.start)).toBe(true);
  });
});
