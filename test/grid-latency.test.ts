// Routes by measured latency: the client pings the peers it is linked to (over the mesh's data
// channels), sends the round trips with its route requests, and the coordinator picks the faster of
// two replicas; measurements are cached, so asking again costs no pings.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PeerLatency, signalingRoutes, type PingableLink } from '../client/grid/routes.ts';
import type { GridPeer } from '../client/grid/index.ts';
import { Mesh } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import type { ModelCoverage, ModelSpec } from '../protocol/index.ts';
import { CAPABILITIES, startGridNet, type GridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';
import { idOf, testIdentity } from './helpers/identities.ts';

const NETWORK = 'latency';
let net: GridNet;
let peers: GridPeer[];
let client: Mesh;
let spec: ModelSpec;

beforeAll(async () => {
  net = await startGridNet();
  peers = [await net.peer(NETWORK, 'near-peer'), await net.peer(NETWORK, 'far-peer')];
  // A pure client offers no memory, so both replicas land on the serving peers.
  const capabilities = { ...CAPABILITIES, memoryBudgetMB: 0 };
  client = new Mesh({ ...nodePlatform(), signal: net.server.wsUrl, network: NETWORK, capabilities, autoConnect: false, maxConnections: 16, identity: testIdentity('the-client') });
  await client.start();
  spec = { ...(await net.spec('tiny-llama')), replication: 2 };
  let coverage: ModelCoverage | undefined;
  client.signaling.on('models', (models) => (coverage = models.find((m) => m.model.modelId === spec.modelId)));
  client.signaling.send({ type: 'serve', model: spec });
  await waitFor(() => Boolean(coverage?.ready.every((r) => r >= 2)), 30_000, 'every layer ready on both peers').catch((err) => {
    throw new Error(`${(err as Error).message}; coverage ${JSON.stringify(coverage && { assigned: coverage.assigned, ready: coverage.ready })}`);
  });
  for (const p of peers) await client.connect(p.peerId);
});

afterAll(async () => {
  client?.close();
  await net?.close();
});

/** The mesh's link, with `extraMs` added to every round trip (a peer far away). */
function slowed(link: PingableLink | undefined, extraMs: number, pings: string[], id: string): PingableLink | undefined {
  if (!link) return undefined;
  return {
    get open() {
      return link.open;
    },
    async ping() {
      pings.push(id);
      const ms = await link.ping();
      await new Promise((r) => setTimeout(r, extraMs));
      return ms + extraMs;
    },
  };
}

describe('routes by measured latency', () => {
  it('sends the measured round trips and gets the faster replica, the slower one when it is excluded', async () => {
    const pings: string[] = [];
    const latency = new PeerLatency({
      link: (id) => slowed(client.link(id), id === idOf('far-peer') ? 150 : 0, pings, id),
      candidates: () => client.connectedPeers(),
      timeoutMs: 2000,
    });
    const ask = vi.spyOn(client.signaling, 'requestRoute');
    const routes = signalingRoutes(client.signaling, spec.modelId, { latency });

    expect((await routes([])).hops.map((h) => h.peerId)).toEqual([idOf('near-peer')]);
    const sent = ask.mock.calls[0]![1]!.latencyMs!;
    expect(Object.keys(sent).sort()).toEqual([idOf('far-peer'), idOf('near-peer')].sort());
    expect(sent[idOf('far-peer')]!).toBeGreaterThanOrEqual(150);
    expect(sent[idOf('near-peer')]!).toBeLessThan(sent[idOf('far-peer')]!);
    expect(pings.sort()).toEqual([idOf('far-peer'), idOf('near-peer')].sort());

    // Cached: no new pings; an excluded peer is neither measured nor sent.
    expect((await routes([idOf('near-peer')])).hops.map((h) => h.peerId)).toEqual([idOf('far-peer')]);
    expect(pings).toHaveLength(2);
    expect(Object.keys(ask.mock.calls[1]![1]!.latencyMs!)).toEqual([idOf('far-peer')]);
    ask.mockRestore();
  });

  it('re-measures when the cache is stale, skips peers without an open link, and gives up slow pings', async () => {
    let now = 0;
    const pings: string[] = [];
    const latency = new PeerLatency({
      link: (id) => (id === 'stranger' ? undefined : slowed(client.link(id), id === idOf('far-peer') ? 300 : 0, pings, id)),
      candidates: () => [...client.connectedPeers(), 'stranger'],
      ttlMs: 1000,
      timeoutMs: 100,
      now: () => now,
    });
    const first = await latency.measure();
    expect(Object.keys(first)).toEqual([idOf('near-peer')]); // far-peer timed out, stranger has no link
    await latency.measure();
    expect(pings.filter((p) => p === idOf('near-peer'))).toHaveLength(1);
    now = 5000;
    await latency.measure();
    expect(pings.filter((p) => p === idOf('near-peer'))).toHaveLength(2);
  });
});
