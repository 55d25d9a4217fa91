// Links through a real TURN server (coturn on loopback) when the signaling server forces relay-only
// ICE: Node peers (@roamhq/wrtc) link over relay candidates with the credentials each welcome
// mints, and a credential that is expired or minted with another secret is refused by the TURN
// server, so the link fails at once with a named error.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Mesh } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import { AigridError, ephemeralIdentity, FrameType, type Capabilities } from '../protocol/index.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { turnCredential, type IceOptions } from '../signaling/ice.ts';
import { startTurnServer, type TurnServer } from './helpers/turn-server.ts';
import { waitFor } from './helpers/wait.ts';

const capabilities: Capabilities = { kind: 'node', gpu: null, memoryBudgetMB: 0, throughput: { gflops: 1, backend: 'cpu' } };

let turn: TurnServer;
const servers: SignalingServer[] = [];
const meshes: Mesh[] = [];

async function server(ice: IceOptions | undefined): Promise<SignalingServer> {
  const s = await startSignalingServer({ heartbeatMs: 1000, ice });
  servers.push(s);
  return s;
}

async function join(on: SignalingServer, network: string, extra: Partial<ConstructorParameters<typeof Mesh>[0]> = {}): Promise<Mesh> {
  const mesh = new Mesh({ ...nodePlatform(), signal: on.wsUrl, network, capabilities, autoConnect: false, connectTimeoutMs: 15_000, ...extra });
  meshes.push(mesh);
  await mesh.start();
  return mesh;
}

/** Both ends of a link attempt from a to b: what each end's link ended with. */
async function failedLink(a: Mesh, b: Mesh): Promise<{ code: string; message: string; ms: number }> {
  await waitFor(() => a.peers().some((p) => p.peerId === b.peerId), 5000, 'a sees b');
  const started = performance.now();
  try {
    await a.connect(b.peerId);
  } catch (err) {
    expect(err).toBeInstanceOf(AigridError);
    return { code: (err as AigridError).code, message: (err as AigridError).message, ms: performance.now() - started };
  }
  throw new Error(`the link opened: ${JSON.stringify(await a.link(b.peerId)?.candidateTypes())}`);
}

beforeAll(async () => {
  turn = await startTurnServer();
});

afterEach(async () => {
  for (const mesh of meshes.splice(0)) mesh.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await turn?.close();
});

describe('relay-only links through coturn', () => {
  it('two Node peers link over relay candidates with the credentials their welcomes carry and exchange frames', async () => {
    const s = await server({ servers: [turn.udpUrl], turnSecret: turn.secret, relayOnly: true });
    const a = await join(s, 'relay');
    const b = await join(s, 'relay');
    await waitFor(() => a.peers().length === 1, 5000, 'a sees b');
    const started = performance.now();
    const link = await a.connect(b.peerId);
    const linkMs = performance.now() - started;
    await waitFor(() => b.link(a.peerId)?.open === true, 5000, "b's end open");
    // The pair the connection chose is a relay on both sides: nothing else was allowed.
    expect(await link.candidateTypes()).toEqual({ local: 'relay', remote: 'relay' });
    expect(await b.link(a.peerId)!.candidateTypes()).toEqual({ local: 'relay', remote: 'relay' });
    const got = new Promise<Uint8Array>((resolve) => b.once('frame', (_from, f) => resolve(f.payload)));
    const payload = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
    await a.send(b.peerId, FrameType.data, payload);
    expect(await got).toEqual(payload);
    const back = new Promise<Uint8Array>((resolve) => a.once('frame', (_from, f) => resolve(f.payload)));
    await b.send(a.peerId, FrameType.data, new Uint8Array([9, 8, 7]));
    expect([...(await back)]).toEqual([9, 8, 7]);
    console.log(`relay link in ${linkMs.toFixed(0)} ms; round trip ${(await link.ping()).toFixed(1)} ms`);
    // coturn allocated a relay for each peer with the credential minted for it.
    for (const m of [a, b]) expect(turn.log()).toMatch(new RegExp(`user <\\d+:${m.peerId}>: incoming packet ALLOCATE processed, success`));
  });

  it('without ICE options links stay host to host (the check above tells the two apart)', async () => {
    const s = await server(undefined);
    const a = await join(s, 'plain');
    const b = await join(s, 'plain');
    await waitFor(() => a.peers().length === 1, 5000, 'a sees b');
    expect(await (await a.connect(b.peerId)).candidateTypes()).toEqual({ local: 'host', remote: 'host' });
  });

  it('an expired credential is refused by the TURN server: the link fails with ERR_CONNECTION_FAILED at once', async () => {
    const s = await server(undefined);
    // Each peer's own servers (relay-only by its own choice): a credential for its id that expired a minute ago.
    const expiredPeer = async () => {
      const identity = ephemeralIdentity();
      const iceServers = [{ urls: [turn.udpUrl], ...turnCredential(turn.secret, identity.peerId, Math.floor(Date.now() / 1000) - 60) }];
      return join(s, 'expired', { identity, iceServers, iceTransportPolicy: 'relay' });
    };
    const a = await expiredPeer();
    const b = await expiredPeer();
    const failure = await failedLink(a, b);
    expect(failure.code).toBe('ERR_CONNECTION_FAILED');
    expect(failure.message).toMatch(/no relay candidate/);
    expect(failure.ms).toBeLessThan(10_000);
    console.log(`expired credential refused in ${failure.ms.toFixed(0)} ms`);
    // coturn refused each peer's own credential (not just the first, unauthenticated request).
    for (const m of [a, b]) expect(turn.log()).toMatch(new RegExp(`user <\\d+:${m.peerId}>: .*error 401`));
  });

  it('credentials minted with another secret are refused: the link fails with ERR_CONNECTION_FAILED at once', async () => {
    const s = await server({ servers: [turn.udpUrl], turnSecret: 'not-the-turn-servers-secret', relayOnly: true });
    const a = await join(s, 'forged');
    const b = await join(s, 'forged');
    const failure = await failedLink(a, b);
    expect(failure.code).toBe('ERR_CONNECTION_FAILED');
    expect(failure.message).toMatch(/no relay candidate/);
    expect(failure.ms).toBeLessThan(10_000);
    console.log(`forged credential refused in ${failure.ms.toFixed(0)} ms`);
    for (const m of [a, b]) expect(turn.log()).toMatch(new RegExp(`user <\\d+:${m.peerId}>: .*error 401`));
    // The same peers on a server that knows the right secret link at once.
    const good = await server({ servers: [turn.udpUrl], turnSecret: turn.secret, relayOnly: true });
    const c = await join(good, 'forged');
    const d = await join(good, 'forged');
    await waitFor(() => c.peers().length === 1, 5000, 'c sees d');
    expect(await (await c.connect(d.peerId)).candidateTypes()).toEqual({ local: 'relay', remote: 'relay' });
  });
});
