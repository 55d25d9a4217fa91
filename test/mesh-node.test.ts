// The mesh between Node peers (@roamhq/wrtc): glare, fan-out limits, backpressure, packing, bad frames,
// the destroy path, and reconnection to a restarted signaling server.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Mesh, type PeerLink } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import { AigridError, FrameType, SEND_HIGH_WATER_BYTES, type Capabilities } from '../protocol/index.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { waitFor } from './helpers/wait.ts';
import { testIdentity } from './helpers/identities.ts';

const capabilities: Capabilities = {
  kind: 'node',
  gpu: null,
  memoryBudgetMB: 256,
  throughput: { gflops: 1, backend: 'cpu' },
};

let server: SignalingServer;
const meshes: Mesh[] = [];

async function join(network: string, extra: Partial<ConstructorParameters<typeof Mesh>[0]> = {}): Promise<Mesh> {
  const mesh = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network, capabilities, autoConnect: false, ...extra });
  meshes.push(mesh);
  await mesh.start();
  return mesh;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(AigridError);
    return (err as AigridError).code;
  }
  return 'no error';
}

beforeAll(async () => {
  server = await startSignalingServer({ heartbeatMs: 1000 });
});

afterEach(() => {
  for (const mesh of meshes.splice(0)) mesh.close();
});

afterAll(async () => {
  await server.close();
});

describe('Node mesh', () => {
  it('settles glare: simultaneous connects from both sides end in one open link', async () => {
    let glares = 0;
    for (let round = 0; round < 4; round++) {
      const a = await join(`glare-${round}`, { identity: testIdentity(`peer-a-${round}`) });
      const b = await join(`glare-${round}`, { identity: testIdentity(`peer-b-${round}`) });
      for (const m of [a, b]) m.signaling.on('glare', () => glares++);
      await waitFor(() => a.peers().length === 1, 5000, 'a sees b');
      // Alternate who asks first so both arrival orders at the server occur.
      const [first, second] = round % 2 ? [a, b] : [b, a];
      const links = await Promise.all([first.connect(second.peerId), second.connect(first.peerId)]);
      expect(links.every((l) => l.open)).toBe(true);
      expect(a.connectedPeers()).toEqual([b.peerId]);
      expect(b.connectedPeers()).toEqual([a.peerId]);
      const got = new Promise<Uint8Array>((resolve) => b.once('frame', (_from, f) => resolve(f.payload)));
      await a.send(b.peerId, FrameType.data, new Uint8Array([round, 1, 2]));
      expect([...(await got)]).toEqual([round, 1, 2]);
      a.close();
      b.close();
    }
    expect(glares).toBeGreaterThan(0); // the offers really crossed at the server
  });

  it('bounds fan-out: a full peer declines offers and refuses to open more links', async () => {
    const hub = await join('fanout', { maxConnections: 1 });
    const first = await join('fanout');
    const second = await join('fanout');
    await waitFor(() => hub.peers().length === 2, 5000, 'hub sees both');
    await first.connect(hub.peerId);
    expect(await codeOf(second.connect(hub.peerId))).toBe('ERR_DECLINED');
    expect(await codeOf(hub.connect(second.peerId))).toBe('ERR_FANOUT_LIMIT');
    expect(await codeOf(hub.connect('nobody-here'))).toBe('ERR_UNKNOWN_TARGET');
    expect(hub.connectedPeers()).toEqual([first.peerId]);
  });

  it('keeps the channel buffer under the high-water mark and delivers every byte', async () => {
    const a = await join('pressure');
    const b = await join('pressure');
    await waitFor(() => a.peers().length === 1, 5000, 'a sees b');
    const link: PeerLink = await a.connect(b.peerId);
    let received = 0;
    let sum = 0;
    const errors: string[] = [];
    b.on('frameError', (_from, err) => errors.push(`${err.code}: ${err.message}`));
    b.on('disconnect', (_id, err) => errors.push(`disconnect ${err?.code ?? ''}`));
    b.on('frame', (_from, f) => {
      received += f.payload.byteLength;
      for (let i = 0; i < f.payload.length; i += 4096) sum += f.payload[i]!;
    });
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, link.bufferedAmount)), 1);
    const frames = Array.from({ length: 12 }, (_, i) => new Uint8Array(1024 * 1024 + i).fill(i + 1));
    await Promise.all(frames.map((f) => link.send(FrameType.data, f)));
    clearInterval(sampler);
    const total = frames.reduce((n, f) => n + f.byteLength, 0);
    await waitFor(() => received === total, 30_000, 'all bytes received').catch((err: Error) => {
      throw new Error(`${err.message}: ${received} of ${total} bytes; buffered ${link.bufferedAmount}; errors ${JSON.stringify(errors)}`);
    });
    expect(sum).toBe(frames.reduce((s, f, i) => s + Math.ceil(f.byteLength / 4096) * (i + 1), 0));
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(SEND_HIGH_WATER_BYTES + link.chunkBytes);
  });

  it('packs small frames sent together into one channel message, keeping their order around a large one', async () => {
    const a = await join('packing');
    const b = await join('packing');
    await waitFor(() => a.peers().length === 1, 5000, 'a sees b');
    const link = await a.connect(b.peerId);
    await waitFor(() => b.link(a.peerId)?.open === true, 5000, 'b has the link');
    let messages = 0;
    (b.link(a.peerId) as unknown as { peer: { on(e: 'data', fn: () => void): void } }).peer.on('data', () => messages++);
    const got: number[] = [];
    b.on('frame', (_from, f) => got.push(f.payload[0]!));
    // 40 small frames, one that spans several messages, then 40 more: all sent in one run.
    const sizes = [...Array<number>(40).fill(100), 3 * link.chunkBytes, ...Array<number>(40).fill(100)];
    await Promise.all(sizes.map((n, i) => link.send(FrameType.data, new Uint8Array(n).fill(i))));
    await waitFor(() => got.length === sizes.length, 10_000, 'every frame arrived');
    expect(got).toEqual(sizes.map((_, i) => i));
    // Each run of small frames is one message; the large one takes four (its own three and a bit).
    expect(messages).toBeLessThanOrEqual(6);
  });

  it('answers a malformed frame with a named error and keeps the link', async () => {
    const a = await join('junk');
    const b = await join('junk');
    await waitFor(() => a.peers().length === 1, 5000, 'a sees b');
    const link = await a.connect(b.peerId);
    const errors: string[] = [];
    b.on('frameError', (_from, err) => errors.push(err.code));
    const raw = (link as unknown as { peer: { send(d: Uint8Array): void } }).peer;
    raw.send(new Uint8Array([1, 2, 3]));
    raw.send(new Uint8Array(64).fill(0xa1));
    const got = new Promise<number>((resolve) => b.once('frame', (_from, f) => resolve(f.payload.byteLength)));
    await link.send(FrameType.data, new Uint8Array(300_000));
    expect(await got).toBe(300_000);
    expect(errors).toEqual(['ERR_FRAME_MALFORMED', 'ERR_FRAME_MALFORMED']);
    expect(link.open).toBe(true);
  });

  it('has one destroy path: pending sends reject and the other side sees the link close', async () => {
    const a = await join('destroy');
    const b = await join('destroy');
    await waitFor(() => a.peers().length === 1, 5000, 'a sees b');
    const link = await a.connect(b.peerId);
    await waitFor(() => b.connectedPeers().length === 1, 5000, 'b linked');
    const closed = new Promise<string | undefined>((resolve) => b.once('disconnect', (_id, err) => resolve(err?.code)));
    const big = link.send(FrameType.data, new Uint8Array(16 * 1024 * 1024));
    link.destroy(null);
    expect(await codeOf(big)).toBe('ERR_PEER_CLOSED');
    expect(await codeOf(link.send(FrameType.data, new Uint8Array(1)))).toBe('ERR_PEER_CLOSED');
    expect(await closed).toBeDefined();
    expect(a.connectedPeers()).toEqual([]);
  });

  it('reconnects to a restarted signaling server with backoff and rejoins', async () => {
    const own = await startSignalingServer({ heartbeatMs: 1000 });
    const port = own.port;
    const mesh = new Mesh({ ...nodePlatform(), signal: own.wsUrl, network: 'comeback', capabilities });
    meshes.push(mesh);
    await mesh.start();
    const states: string[] = [];
    mesh.on('state', (s) => states.push(s));
    await own.close();
    await waitFor(() => states.includes('connecting'), 5000, 'mesh notices the server is gone');
    await new Promise((r) => setTimeout(r, 700)); // a few failed tries while the port is closed
    const again = await startSignalingServer({ heartbeatMs: 1000, port });
    try {
      await waitFor(() => mesh.signaling.connected, 15_000, 'mesh rejoined');
      const res = await fetch(`${again.httpUrl}/api/networks/comeback`);
      const body = (await res.json()) as { peers: { peerId: string }[] };
      expect(body.peers.map((p) => p.peerId)).toEqual([mesh.peerId]);
    } finally {
      mesh.close();
      await again.close();
    }
  });
});
