// A large network's directory: past the complete-directory size no welcome lists the others and
// no join is announced; members look up the peers they need, and hear of the updates and leaves
// of the peers they were told of (welcome, join, lookup, route, signal) and of no others. The
// grid serves a model the same way when every directory is looked up.
import { describe, expect, it } from 'vitest';
import { GridPeer, RemoteChain, signalingRoutes } from '../client/grid/index.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openModelNode } from '../client/model/checkpoint/node.ts';
import { startGridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';
import { Directory, MAX_TOLD_PER_CONNECTION } from '../signaling/directory.ts';
import type { Connection } from '../signaling/connection.ts';
import { useSignalingServer } from './helpers/server-fixture.ts';
import { CAPS, sleep } from './helpers/ws-client.ts';
import { idOf } from './helpers/identities.ts';

const OFFER = { type: 'offer', sdp: 'v=0 offer' } as const;

const fixture = useSignalingServer();
const { start, join } = fixture;

describe('signaling server: a directory larger than the complete size', () => {
  it('lists and announces nobody past the size; lookups, signals and earlier announcements decide who hears of whom', async () => {
    await start({ fullDirectoryPeers: 3 });
    const [a, b, c] = [await join('dir-a'), await join('dir-b'), await join('dir-c')];
    // Up to the size, as always: everyone is listed and announced.
    expect(c.all('welcome')[0]!.peers.map((p) => p.peerId).sort()).toEqual([idOf('dir-a'), idOf('dir-b')].sort());
    expect(c.all('welcome')[0]!.directory).toEqual({ total: 2, complete: true });
    await a.next('join', (m) => m.peer.peerId === idOf('dir-c'));

    const d = await join('dir-d');
    expect(d.all('welcome')[0]!).toMatchObject({ peers: [], directory: { total: 3, complete: false } });
    const e = await join('dir-e');
    await sleep(100);
    for (const member of [a, b, c, d]) expect(member.all('join').map((j) => j.peer.peerId)).not.toContain(idOf('dir-e'));
    expect(a.all('join').map((j) => j.peer.peerId)).not.toContain(idOf('dir-d'));

    // d looks up a (and a stranger, and itself): it gets a's entry and nothing else.
    d.send({ type: 'lookup', id: 7, peerIds: [idOf('dir-a'), idOf('nobody-here'), idOf('dir-d')] });
    const found = await d.next('peers');
    expect(found).toMatchObject({ id: 7 });
    expect(found.peers.map((p) => p.peerId)).toEqual([idOf('dir-a')]);
    expect(found.peers[0]!.capabilities).toEqual(CAPS);

    // a's update reaches those told of it (b and c at their joins, d by its lookup), not e.
    a.send({ type: 'update', capabilities: { ...CAPS, memoryBudgetMB: 4096 } });
    for (const member of [b, c, d]) expect((await member.next('update')).peer.peerId).toBe(idOf('dir-a'));
    // e signals b: b links to e and hears when it leaves; nobody else does.
    e.send({ type: 'signal', to: idOf('dir-b'), data: OFFER });
    await b.next('signal');
    await e.close();
    expect(await b.next('leave')).toEqual({ type: 'leave', peerId: idOf('dir-e'), reason: 'closed' });
    await a.close();
    for (const member of [b, c, d]) expect(await member.next('leave', (m) => m.peerId === idOf('dir-a'))).toMatchObject({ reason: 'closed' });
    await sleep(100);
    for (const member of [c, d]) expect(member.all('leave').map((l) => l.peerId)).not.toContain(idOf('dir-e'));
    expect(e.all('update')).toEqual([]);
  });

  it('refuses a lookup of too many peers by name, and answers one of unknown peers with none', async () => {
    await start({ fullDirectoryPeers: 1 });
    const a = await join('dir-a');
    a.send({ type: 'lookup', id: 1, peerIds: Array.from({ length: 65 }, (_, i) => idOf(`p-${i}`)) });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_INVALID_MESSAGE', ref: 'lookup' });
    a.send({ type: 'lookup', id: 2, peerIds: [idOf('nobody')] });
    expect(await a.next('peers')).toEqual({ type: 'peers', id: 2, peers: [] });
  });
});

describe('Directory', () => {
  it('keeps a connection informed of at most MAX_TOLD_PER_CONNECTION peers, the most recent', () => {
    const directory = new Directory();
    // The two fields the directory reads of a connection.
    const conn = { peer: { peerId: 'watcher' }, network: 'net' } as unknown as Connection;
    for (let i = 0; i < MAX_TOLD_PER_CONNECTION + 100; i++) directory.note(conn, `peer-${i}`);
    expect(directory.size).toBe(MAX_TOLD_PER_CONNECTION);
    expect(directory.audience('net', 'peer-0')).toEqual([]);
    expect(directory.audience('net', `peer-${MAX_TOLD_PER_CONNECTION + 99}`)).toEqual([conn]);
    directory.forgetConnection(conn);
    expect(directory.size).toBe(0);
    expect(directory.audience('net', `peer-${MAX_TOLD_PER_CONNECTION + 99}`)).toEqual([]);
  });
});

describe('a grid whose directories are all looked up', () => {
  it('places, links and serves the golden tokens when no welcome lists anyone', async () => {
    const net = await startGridNet({ fullDirectoryPeers: 1 });
    try {
      const MB = 1024 * 1024;
      const peers = [];
      for (const id of ['looked-up-a', 'looked-up-b']) peers.push(new GridPeer({ mesh: await net.join('large', id, 2), backend: 'cpu', open: checkpointOpener(openModelNode, { cache: false }) }));
      const client = await net.join('large', 'looked-up-client', 0);
      expect(client.peers()).toEqual([]);
      const spec = { ...(await net.spec('tiny-llama')), layerBytes: MB };
      let ready = false;
      client.signaling.on('models', (models) => (ready = models.some((m) => m.model.modelId === spec.modelId && m.ready.every((r) => r >= 1))));
      client.signaling.send({ type: 'serve', model: spec });
      await waitFor(() => ready, 30_000, 'the model ready');
      const chain = new RemoteChain({ mesh: client, modelId: spec.modelId, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, routes: signalingRoutes(client.signaling, spec.modelId) });
      const g = (await net.model('tiny-llama')).golden[1]!;
      const result = await chain.generate(await net.head('tiny-llama'), g.ids, { maxTokens: g.greedy.length, temperature: 0 });
      expect(result.tokens).toEqual(g.greedy);
      // The client knows the peers it linked to, and only them.
      expect(client.peers().map((p) => p.peerId).sort()).toEqual(peers.map((p) => p.peerId).sort());
      chain.close();
      for (const p of peers) p.close();
    } finally {
      await net.close();
    }
  });
});
