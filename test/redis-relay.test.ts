// Two signaling processes on one Redis, in this test process: members of either see one
// registry; signals, declines, joins, updates, lookups and leaves cross between them; one of them
// coordinates the network (its lease), the other forwards serve, status and route to it and relays
// its assign and models messages; when a process goes away, the other takes its lease over from
// the serving store in Redis and drops its peers that do not come back.
import { Redis } from 'ioredis';
import { Mesh } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ModelSpec } from '../protocol/index.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { idOf, testIdentity } from './helpers/identities.ts';
import { startRedisServer, type RedisServer } from './helpers/redis-server.ts';
import { CAPS, TestClient } from './helpers/ws-client.ts';
import { waitFor } from './helpers/wait.ts';

const OFFER = { type: 'offer', sdp: 'v=0 offer' } as const;
const ANSWER = { type: 'answer', sdp: 'v=0 answer' } as const;
const MB = 1024 * 1024;
const SPEC: ModelSpec = { modelId: 'relay-model', source: 'http://127.0.0.1:9/relay-model', numLayers: 4, hiddenSize: 8, layerBytes: MB, weightDtype: 'f32', replication: 1 };

let redis: RedisServer;
let admin: Redis;
let servers: SignalingServer[] = [];
let clients: TestClient[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
  admin = new Redis(redis.url);
});

afterAll(async () => {
  admin?.disconnect();
  await redis?.close();
});

afterEach(async () => {
  for (const c of clients) expect(c.invalid).toEqual([]);
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.close()));
  clients = [];
  servers = [];
  await admin.flushall();
});

async function start(): Promise<SignalingServer> {
  const server = await startSignalingServer({ heartbeatMs: 60_000, redis: redis.url, redisLeaseMs: 1_000, recoveryMs: 1_000 });
  servers.push(server);
  return server;
}

async function join(server: SignalingServer, name: string, memoryBudgetMB = CAPS.memoryBudgetMB): Promise<TestClient> {
  const client = await TestClient.open(server.wsUrl);
  clients.push(client);
  await client.hello(name, 'net', { ...CAPS, memoryBudgetMB });
  await client.next('welcome');
  return client;
}

describe('two signaling processes on one Redis', () => {
  it('share the registry and relay signals, declines, joins, updates, lookups and leaves', async () => {
    const [s1, s2] = [await start(), await start()];
    const a = await join(s1, 'relay-a');
    const b = await join(s2, 'relay-b');
    expect(b.all('welcome')[0]!.peers.map((p) => p.peerId)).toEqual([idOf('relay-a')]);
    expect((await a.next('join')).peer.peerId).toBe(idOf('relay-b'));

    a.send({ type: 'signal', to: idOf('relay-b'), data: OFFER });
    expect(await b.next('signal')).toEqual({ type: 'signal', from: idOf('relay-a'), data: OFFER });
    b.send({ type: 'signal', to: idOf('relay-a'), data: ANSWER });
    expect(await a.next('signal')).toEqual({ type: 'signal', from: idOf('relay-b'), data: ANSWER });
    b.send({ type: 'decline', to: idOf('relay-a'), reason: 'full' });
    expect(await a.next('decline')).toEqual({ type: 'decline', from: idOf('relay-b'), reason: 'full' });
    a.send({ type: 'signal', to: idOf('nobody'), data: OFFER });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_UNKNOWN_TARGET', ref: 'signal' });

    a.send({ type: 'lookup', id: 3, peerIds: [idOf('relay-b'), idOf('nobody')] });
    expect((await a.next('peers')).peers.map((p) => p.peerId)).toEqual([idOf('relay-b')]);
    b.send({ type: 'update', capabilities: { ...CAPS, memoryBudgetMB: 77 } });
    expect((await a.next('update')).peer.capabilities.memoryBudgetMB).toBe(77);

    const health = async (s: SignalingServer) => ((await (await fetch(`${s.httpUrl}/healthz`)).json()) as { peers: number }).peers;
    expect([await health(s1), await health(s2)]).toEqual([2, 2]);
    await b.close();
    expect(await a.next('leave')).toEqual({ type: 'leave', peerId: idOf('relay-b'), reason: 'closed' });
    expect(await health(s1)).toBe(1);
    // The network has one owner whichever process is asked: its first peer.
    for (const s of [s1, s2]) expect(((await (await fetch(`${s.httpUrl}/api/networks/net`)).json()) as { owner: string }).owner).toBe(idOf('relay-a'));
  });

  it('coordinate each network on one process; the other forwards to it; a takeover keeps the placements', async () => {
    const [s1, s2] = [await start(), await start()];
    const p1 = await join(s1, 'relay-p1', 4);
    const p2 = await join(s2, 'relay-p2', 4);
    const client = await join(s2, 'relay-client', 0);
    const leader = await admin.get('aigrid:lease:net');
    expect([s1.processId, s2.processId]).toContain(leader);

    client.send({ type: 'serve', model: SPEC });
    const assigned = await Promise.all([p1.next('assign'), p2.next('assign')]);
    expect(assigned.map((m) => m.end - m.start)).toEqual([2, 2]);
    for (const [peer, m] of [[p1, assigned[0]], [p2, assigned[1]]] as const) {
      peer.send({ type: 'status', modelId: SPEC.modelId, start: m.start, end: m.end, state: 'ready', sessions: 0, tokensServed: 0 });
    }
    await client.next('models', (m) => m.models[0]?.ready.every((r) => r === 1) ?? false);
    await p1.next('models', (m) => m.models[0]?.ready.every((r) => r === 1) ?? false);

    const routeFrom = async (c: TestClient, requestId: number) => {
      c.send({ type: 'route', requestId, modelId: SPEC.modelId });
      return c.next('route', (m) => m.requestId === requestId);
    };
    const route = await routeFrom(client, 1);
    expect(route.hops.map((h) => h.peerId).sort()).toEqual([idOf('relay-p1'), idOf('relay-p2')].sort());
    expect((await routeFrom(p1, 2)).hops).toEqual(route.hops);

    // The coordinating process goes away: its peers' entries stay until their locations expire,
    // then they are dropped and announced as timed out; the other process holds the lease.
    const [gone, kept] = leader === s1.processId ? [s1, s2] : [s2, s1];
    const [survivor, lost] = gone === s1 ? [p2, 'relay-p1'] : [p1, 'relay-p2'];
    await gone.close();
    servers = servers.filter((s) => s !== gone);
    expect(await survivor.next('leave', (m) => m.peerId === idOf(lost), 8_000)).toMatchObject({ reason: 'timeout' });
    expect(await admin.get('aigrid:lease:net')).toBe(kept.processId);
    // After the recovery time, the lost peer's layers go to the survivor.
    const grown = await survivor.next('assign', (m) => m.start === 0 && m.end === 4, 8_000);
    survivor.send({ type: 'status', modelId: SPEC.modelId, start: grown.start, end: grown.end, state: 'ready', sessions: 0, tokensServed: 0 });
    const late = await join(kept, 'relay-late', 0);
    await waitFor(async () => {
      late.send({ type: 'route', requestId: 5, modelId: SPEC.modelId });
      const reply = await Promise.race([late.next('route', (m) => m.requestId === 5, 1000), late.next('error', (m) => m.requestId === 5, 1000)]).catch(() => undefined);
      return reply?.type === 'route' && reply.hops.length === 1 && reply.hops[0]!.peerId === survivor.all('welcome')[0]!.peerId;
    }, 8_000, 'a route through the survivor');
  });

  it('a peer given both processes\' URLs moves to the other when its process goes away, keeping its id', async () => {
    const [s1, s2] = [await start(), await start()];
    const watcher = await join(s2, 'relay-watcher');
    const mesh = new Mesh({ ...nodePlatform(), signal: [s1.wsUrl, s2.wsUrl], network: 'net', capabilities: CAPS, autoConnect: false, identity: testIdentity('relay-roaming') });
    try {
      await mesh.start();
      expect(mesh.signaling.url).toBe(s1.wsUrl);
      expect((await watcher.next('join')).peer.peerId).toBe(idOf('relay-roaming'));
      await s1.close();
      servers = servers.filter((s) => s !== s1);
      await waitFor(() => mesh.signaling.connected && mesh.signaling.url === s2.wsUrl, 8_000, 'the mesh on the second process');
      // The watcher sees the same peer there, and reaches it through the second process.
      await waitFor(async () => {
        watcher.send({ type: 'lookup', id: 9, peerIds: [idOf('relay-roaming')] });
        const found = await watcher.next('peers', (m) => m.id === 9, 1000).catch(() => undefined);
        return found?.peers.some((p) => p.peerId === idOf('relay-roaming')) ?? false;
      }, 8_000, 'the roaming peer in the registry');
      const declined = new Promise((resolve) => mesh.signaling.once('decline', (from, reason) => resolve({ from, reason })));
      watcher.send({ type: 'decline', to: idOf('relay-roaming'), reason: 'full' });
      expect(await declined).toEqual({ from: idOf('relay-watcher'), reason: 'full' });
    } finally {
      mesh.close();
    }
  });
});
