// Attacks on a grid open to strangers, each reproduced against the real part and shown refused or
// contained. (The ticket and verification attacks join this file as those defences land.)
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startModelFileServer, type ModelFileServer } from '../client/cli/model-files.ts';
import type { ServingStatus } from '../client/grid/index.ts';
import { Mesh, type MeshOptions } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import { encodeFrame, FrameReassembler, FrameType, randomSessionId, ServingFrame, signedHello, type Frame, type ModelSpec, type ServerMessage, type SessionSetup } from '../protocol/index.ts';
import { startSignalingServer } from '../signaling/server.ts';
import { FIXTURE_DIR } from './fixtures/index.ts';
import { startGridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';
import { CAPS, sleep, TestClient } from './helpers/ws-client.ts';
import { testIdentity } from './helpers/identities.ts';

/** A raw signaling client joined to `network` offering `memoryBudgetMB`, kept in `clients` to close. */
async function joinRaw(url: string, network: string, peerId: string, memoryBudgetMB: number, clients: TestClient[]): Promise<TestClient> {
  const c = await TestClient.open(url);
  clients.push(c);
  await c.hello(peerId, network, { ...CAPS, memoryBudgetMB });
  await c.next('welcome');
  return c;
}

describe('the model-file server of aigrid serve / start', () => {
  let files: ModelFileServer;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aigrid-files-'));
    mkdirSync(join(dir, 'model'));
    mkdirSync(join(dir, 'model', '.git'));
    writeFileSync(join(dir, 'model', 'config.json'), '{"ok":true}');
    writeFileSync(join(dir, 'model', '.env'), 'SECRET=1');
    writeFileSync(join(dir, 'model', '.git', 'config'), '[core]');
    writeFileSync(join(dir, 'outside.txt'), 'outside');
    files = await startModelFileServer(join(dir, 'model'), 'm');
  });
  afterAll(async () => {
    await files?.close();
  });

  it('serves the folder and never a dotfile or anything outside it', async () => {
    const get = async (path: string) => {
      const res = await fetch(files.url + path);
      return [res.status, await res.text()] as const;
    };
    expect(await get('/config.json')).toEqual([200, '{"ok":true}']);
    for (const path of ['/.env', '/.git/config', '/%2eenv', '/%2Egit/config', '/sub/../.env', '/..%2foutside.txt', '/%2e%2e/outside.txt', '/x/%2e%2e/%2e%2e/outside.txt']) {
      const [status, body] = await get(path);
      expect([path, status]).toEqual([path, 404]);
      expect(body).not.toMatch(/SECRET|core|outside/);
    }
  });

  it('serving one file of a folder (a local GGUF) serves that file alone', async () => {
    const one = await startModelFileServer(join(dir, 'model'), 'one', '127.0.0.1', 0, 'config.json');
    try {
      expect((await fetch(`${one.url}/config.json`)).status).toBe(200);
      for (const path of ['/', '/.env', '/other.gguf', '/config.json/', '/%2e%2e/outside.txt']) expect([path, (await fetch(one.url + path)).status]).toEqual([path, 404]);
    } finally {
      await one.close();
    }
  });
});

describe('the frame reassembler', () => {
  it('holds only the bytes received, whatever length a header announces', () => {
    const reassembler = new FrameReassembler();
    const payload = new Uint8Array(1 << 20).map((_, i) => i & 0xff);
    const chunks = encodeFrame(FrameType.data, 9, payload, 16 * 1024 + 12);
    // A header that announces 64 MiB and sends 16 bytes costs 16 bytes, not 64 MiB.
    const liar = new Uint8Array(12 + 16);
    liar.set(chunks[0]!.subarray(0, 12));
    new DataView(liar.buffer).setUint32(8, 64 * 1024 * 1024 - 1, true);
    expect(reassembler.push(liar)).toBeNull();
    expect(reassembler.heldBytes).toBe(16);
    // A new frame id is an interleaving error: the liar's frame is dropped and nothing is held.
    expect(() => reassembler.push(chunks[0]!)).toThrow(expect.objectContaining({ code: 'ERR_FRAME_INTERLEAVED' }));
    expect(reassembler.heldBytes).toBe(0);
    // An honest frame grows as it arrives and comes out whole.
    let held = 0;
    let frame = null;
    for (const chunk of chunks) {
      frame = reassembler.push(chunk);
      if (!frame) {
        expect(reassembler.heldBytes).toBeGreaterThanOrEqual(held);
        expect(reassembler.heldBytes).toBeLessThanOrEqual(2 * chunks.indexOf(chunk) * 16 * 1024 + 16 * 1024);
        held = reassembler.heldBytes;
      }
    }
    expect(frame?.payload).toEqual(payload);
    expect(reassembler.heldBytes).toBe(0);
  });
});

describe('web pages of other sites', () => {
  /** The HTTP status of a WebSocket upgrade to /signal from a page of `origin` (101 when it opens). */
  function upgrade(url: string, origin?: string, host?: string): Promise<number> {
    return new Promise((resolve) => {
      const ws = new WebSocket(url, { origin, headers: host ? { host } : {} });
      ws.on('open', () => {
        ws.close();
        resolve(101);
      });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => resolve(0));
    });
  }

  it('cannot open /signal on a loopback server; Node programs, loopback pages and named origins can', async () => {
    const server = await startSignalingServer();
    const open = await startSignalingServer({ allowedOrigins: ['https://grid.example'] });
    try {
      expect(await upgrade(server.wsUrl)).toBe(101); // no Origin: a Node program
      expect(await upgrade(server.wsUrl, 'http://127.0.0.1:5173')).toBe(101);
      expect(await upgrade(server.wsUrl, 'http://localhost:8787')).toBe(101);
      expect(await upgrade(server.wsUrl, 'chrome-extension://abcdefghijklmnop')).toBe(101);
      expect(await upgrade(server.wsUrl, 'https://evil.example')).toBe(403);
      expect(await upgrade(server.wsUrl, 'null')).toBe(403);
      // DNS rebinding: the page's host resolves to 127.0.0.1, but its Origin still names it.
      expect(await upgrade(server.wsUrl, 'http://rebind.example:8787', 'rebind.example:8787')).toBe(403);
      expect(await upgrade(open.wsUrl, 'https://grid.example')).toBe(101);
      expect(await upgrade(open.wsUrl, 'https://evil.example')).toBe(403);
    } finally {
      await server.close();
      await open.close();
    }
  });
});

describe('a stranger who says hello with another peer\'s id', () => {
  it('gets a named error for a mismatched, forged or replayed join; the victim keeps its socket', async () => {
    const server = await startSignalingServer();
    const clients: TestClient[] = [];
    try {
      const victim = await joinRaw(server.wsUrl, 'take', 'victim', 0, clients);
      const witness = await joinRaw(server.wsUrl, 'take', 'witness', 0, clients);
      const victimId = testIdentity('victim').peerId;
      const attempt = async (make: (nonce: string) => Promise<object>) => {
        const c = await TestClient.open(server.wsUrl);
        clients.push(c);
        c.send(JSON.stringify(await make(await c.nonce())));
        const error = await c.next('error');
        expect((await c.closed).code).toBe(1008);
        return error.code;
      };
      // The victim's id with the attacker's own key: the id is not the key's.
      const mine = testIdentity('attacker');
      expect(await attempt(async (nonce) => ({ ...(await signedHello(mine, nonce, 'take', CAPS)), peerId: victimId }))).toBe('ERR_IDENTITY_MISMATCH');
      // The victim's id and public key (both public) with a signature the attacker made up.
      expect(await attempt(async (nonce) => ({ ...(await signedHello(mine, nonce, 'take', CAPS)), peerId: victimId, publicKey: testIdentity('victim').publicKey }))).toBe('ERR_BAD_SIGNATURE');
      // A hello the victim really signed, seen on the wire and replayed on another socket.
      const seen = await signedHello(testIdentity('victim'), await victim.nonce(), 'take', CAPS);
      expect(await attempt(async () => seen)).toBe('ERR_BAD_SIGNATURE');
      // Nothing happened to the victim: still joined, still answered, never announced gone.
      victim.send({ type: 'ping', id: 7 });
      expect(await victim.next('pong')).toMatchObject({ id: 7 });
      await sleep(50);
      expect(witness.all('leave')).toEqual([]);
      expect(victim.all('error')).toEqual([]);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await server.close();
    }
  });

  it('the key\'s holder takes its id over from an old socket, which is told why and stops reconnecting', async () => {
    const server = await startSignalingServer();
    const opts = { ...nodePlatform(), signal: server.wsUrl, network: 'twice', capabilities: CAPS, autoConnect: false };
    const first = new Mesh({ ...opts, identity: testIdentity('copied') });
    const second = new Mesh({ ...opts, identity: testIdentity('copied') });
    try {
      await first.start();
      const fatal = new Promise((resolve) => first.signaling.once('fatal', resolve));
      await second.start();
      expect(await fatal).toMatchObject({ code: 'ERR_REPLACED' });
      await waitFor(() => !first.signaling.connected, 2000, 'the old socket closed');
      await sleep(700); // past the first reconnect delays (250 ms, doubling): the old one does not come back to fight
      expect(second.signaling.connected).toBe(true);
      const view = (await (await fetch(`${server.httpUrl}/api/networks/twice`)).json()) as { peers: { peerId: string }[] };
      expect(view.peers.map((p) => p.peerId)).toEqual([testIdentity('copied').peerId]);
    } finally {
      first.close();
      second.close();
      await server.close();
    }
  });
});

describe('sockets that make the server work for others', () => {
  const MODEL: ModelSpec = {
    modelId: 'amp-model', source: 'https://models.example/amp', numLayers: 4, hiddenSize: 64,
    layerBytes: 100 * 1024 * 1024, weightDtype: 'f16', replication: 1,
  };

  it('state toggling, models floods and update floods are limited; another socket stays answered', async () => {
    // A generous per-connection rate, so what is measured is each type's own limit.
    const server = await startSignalingServer({ heartbeatMs: 60_000, messagesPerSecond: 1000 });
    const clients: TestClient[] = [];
    const join = (peerId: string, memoryBudgetMB = 0) => joinRaw(server.wsUrl, 'amp', peerId, memoryBudgetMB, clients);
    try {
      const attacker = await join('amp-attacker', 1024);
      const watchers = await Promise.all(Array.from({ length: 5 }, (_, i) => join(`amp-watcher-${i}`)));
      const bystander = await join('amp-bystander');
      attacker.send({ type: 'serve', model: MODEL });
      const assign = await attacker.next('assign');
      await watchers[0]!.next('models');
      const before = watchers.map((w) => w.all('models').length);

      // 1. Toggling its own state 200 times: each toggle changes coverage, but members hear the
      // model list a few times, not 200, and the toggler is told it is over its rate.
      const status = (state: 'ready' | 'loading') => ({ type: 'status', modelId: MODEL.modelId, start: assign.start, end: assign.end, state, sessions: 0, tokensServed: 0 }) as const;
      for (let i = 0; i < 200; i++) attacker.send(status(i % 2 ? 'loading' : 'ready'));
      await attacker.next('error', (e) => e.code === 'ERR_RATE_LIMITED' && e.ref === 'status');
      await sleep(300);
      const heard = watchers.map((w, i) => w.all('models').length - before[i]!);
      for (const n of heard) expect(n).toBeLessThanOrEqual(6);

      // 2. Asking for the model list 100 times: the asks share a few answers (at most one per
      // 200 ms), each current when sent; nobody is refused, so a polling client still hears.
      const models = (m: ServerMessage[]) => m.filter((x) => x.type === 'models').length;
      const seen = models(attacker.log);
      for (let i = 0; i < 100; i++) attacker.send({ type: 'models' });
      await sleep(450);
      const answers = models(attacker.log) - seen;
      expect(answers).toBeGreaterThanOrEqual(1);
      expect(answers).toBeLessThanOrEqual(4);

      // 3. Sixty capability updates while a bystander pings: the updates beyond the type's burst
      // are refused, the members hear at most that many, and every ping is answered.
      const updatesBefore = watchers[0]!.all('update').length;
      for (let i = 0; i < 60; i++) attacker.send({ type: 'update', capabilities: { ...CAPS, memoryBudgetMB: 1024 + i } });
      const rtts: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = performance.now();
        bystander.send({ type: 'ping', id: i });
        await bystander.next('pong', (p) => p.id === i);
        rtts.push(performance.now() - t0);
      }
      await attacker.next('error', (e) => e.code === 'ERR_RATE_LIMITED' && e.ref === 'update');
      await sleep(200);
      expect(watchers[0]!.all('update').length - updatesBefore).toBeLessThanOrEqual(5);
      expect(Math.max(...rtts)).toBeLessThan(250); // was 595 ms with every update re-placing and broadcasting
      for (const c of clients) expect(c.invalid).toEqual([]);
    } finally {
      for (const c of clients) await c.close();
      await server.close();
    }
  });
});

describe('model specs served by a stranger', () => {
  it('a peer opens no local path named by the network, and refuses a spec that understates its size', async () => {
    const net = await startGridNet();
    try {
      const peer = await net.peer('specs', 'specs-peer');
      const statuses: ServingStatus[] = [];
      peer.on('status', (s) => statuses.push(s));
      const stranger = await net.join('specs', 'specs-stranger', 0);
      const honest = await net.spec('tiny-llama');
      const failed = async (modelId: string) => {
        await waitFor(() => statuses.some((s) => s.modelId === modelId && s.state === 'failed'), 10_000, `${modelId} refused`);
        return statuses.find((s) => s.modelId === modelId && s.state === 'failed')!.detail ?? '';
      };
      // A real checkpoint on the peer's own disk: it would load if the peer opened local paths.
      const local = join(FIXTURE_DIR, 'tiny-llama');
      const sources: [string, Partial<typeof honest>][] = [
        ['local-path', { source: local }],
        ['file-url', { source: `file://${local}` }],
        ['hub-id-file-mirror', { source: 'org/tiny-llama', baseUrl: `file://${FIXTURE_DIR}` }],
      ];
      for (const [modelId, fields] of sources) {
        // The server refuses such a spec (see the next test); were one to come anyway, from a
        // server that allowed it, the peer still opens nothing: the assignment as it would arrive.
        stranger.signaling.send({ type: 'serve', model: { ...honest, ...fields, modelId } });
        peer.mesh.signaling.emit('assign', { type: 'assign', model: { ...honest, ...fields, modelId }, start: 0, end: 4 });
        expect(await failed(modelId)).toMatch(/not an http\(s\) URL/);
      }
      // A spec that says a layer takes 1 byte would have peers load far past their budgets.
      stranger.signaling.send({ type: 'serve', model: { ...honest, modelId: 'liar', layerBytes: 1 } });
      expect(await failed('liar')).toMatch(/a layer takes 1 bytes; its checkpoint needs \d+/);
      expect(statuses.filter((s) => s.state === 'ready')).toEqual([]);
    } finally {
      await net.close();
    }
  });
});

describe('a client that sets up sessions without end', () => {
  it('keeps at most its share of sessions on a peer; other clients are still served', async () => {
    const net = await startGridNet();
    try {
      const peer = await net.peer('flood', 'flood-peer', { sessionLimits: { perClient: 32, total: 48 } });
      await peer.assign(await net.spec('tiny-llama'), 0, 4);
      const attacker = await net.join('flood', 'flood-attacker', 0);
      const frames: Frame[] = [];
      attacker.on('frame', (_from, f) => frames.push(f));
      const setup = (client: string): SessionSetup => ({ sessionId: randomSessionId(), modelId: 'tiny-llama', hops: [{ peerId: peer.peerId, start: 0, end: 4 }], client });
      const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
      for (let i = 0; i < 2000; i++) void attacker.send(peer.peerId, ServingFrame.session, json(setup(attacker.peerId))).catch(() => {});
      await waitFor(() => frames.length >= 2000, 30_000, 'every setup answered');
      const acks = frames.filter((f) => f.type === ServingFrame.session).length;
      const refusals = frames.filter((f) => f.type === ServingFrame.fail).map((f) => (JSON.parse(new TextDecoder().decode(f.payload)) as { code: string }).code);
      expect(acks).toBe(32);
      expect(new Set(refusals)).toEqual(new Set(['ERR_TOO_MANY_SESSIONS']));
      expect(peer.sessionCount).toBe(32);
      // Another client still gets its sessions, and its generation gives the golden tokens.
      const client = await net.join('flood', 'flood-client', 0);
      const chain = await net.chain(client, 'tiny-llama', [[{ peerId: peer.peerId, start: 0, end: 4 }]]);
      const g = (await net.model('tiny-llama')).golden[0]!;
      expect((await chain.generate(await net.head('tiny-llama'), g.ids, { maxTokens: g.greedy.length, temperature: 0 })).tokens).toEqual(g.greedy);
    } finally {
      await net.close();
    }
  });
});

describe('weight sources a network accepts', () => {
  it('refuses a serve whose weights are not https, a hub id, the server\'s own files or an allowed prefix', async () => {
    const local = await startSignalingServer();
    const publicServer = await startSignalingServer({ host: '0.0.0.0', allowedSources: ['http://mirror.lan/models/'] });
    try {
      const answer = async (url: string, source: Partial<ModelSpec>) => {
        const c = await TestClient.open(url);
        const id = `src-${Math.random().toString(36).slice(2, 8)}`;
        await c.hello(id, id, { ...CAPS, memoryBudgetMB: 0 }); // a network of its own: no other model's list arrives
        await c.next('welcome');
        c.send({ type: 'serve', model: { modelId: 'm', source: 'x/y', numLayers: 2, hiddenSize: 64, layerBytes: 1 << 20, weightDtype: 'f32', replication: 1, ...source } });
        // Accepted: placed (a models message) or only short of memory (no peer here offers any).
        const reply = await Promise.race([
          c.next('models').then(() => 'accepted'),
          c.next('error', (e) => e.ref === 'serve').then((e) => (e.code === 'ERR_INSUFFICIENT_MEMORY' ? 'accepted' : e.code)),
        ]);
        await c.close();
        return reply;
      };
      // On a loopback server: https, hub ids, loopback http.
      expect(await answer(local.wsUrl, { source: 'https://models.example/m' })).toBe('accepted');
      expect(await answer(local.wsUrl, { source: 'org/name' })).toBe('accepted');
      expect(await answer(local.wsUrl, { source: 'org/name-GGUF/q4/name-Q4_K_M.gguf' })).toBe('accepted');
      expect(await answer(local.wsUrl, { source: 'http://127.0.0.1:9/m' })).toBe('accepted');
      for (const source of ['/etc', 'file:///etc/', 'http://10.0.0.1/m', 'ftp://x/m', '../m', 'https://user:pw@x/m', '/etc/m.gguf', 'org/name/../../m.gguf', 'file:///m.gguf']) {
        expect([source, await answer(local.wsUrl, { source })]).toEqual([source, 'ERR_INVALID_ARGUMENT']);
      }
      expect(await answer(local.wsUrl, { source: 'org/name', baseUrl: 'file:///' })).toBe('ERR_INVALID_ARGUMENT');
      // Bound elsewhere: no plain http but its own files and the prefixes its operator names.
      expect(await answer(publicServer.wsUrl, { source: 'http://127.0.0.1:9/m' })).toBe('ERR_INVALID_ARGUMENT');
      expect(await answer(publicServer.wsUrl, { source: `${publicServer.httpUrl}/models/m` })).toBe('accepted');
      expect(await answer(publicServer.wsUrl, { source: 'http://mirror.lan/models/m' })).toBe('accepted');
    } finally {
      await local.close();
      await publicServer.close();
    }
  });
});

describe('a joined socket that serves an existing model id', () => {
  it('cannot replace the model another peer served; its owner still can', async () => {
    const server = await startSignalingServer();
    const clients: TestClient[] = [];
    const join = (peerId: string, memoryBudgetMB: number) => joinRaw(server.wsUrl, 'own', peerId, memoryBudgetMB, clients);
    try {
      const spec: ModelSpec = { modelId: 'owned', source: 'https://models.example/owned', numLayers: 4, hiddenSize: 64, layerBytes: 100 * 1024 * 1024, weightDtype: 'f16', replication: 1 };
      const owner = await join('own-owner', 1024);
      owner.send({ type: 'serve', model: spec });
      const assigned = await owner.next('assign');
      const thief = await join('own-thief', 0);
      thief.send({ type: 'serve', model: { ...spec, source: 'https://evil.example/weights' } });
      const refused = await thief.next('error', (e) => e.ref === 'serve');
      expect(refused).toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
      expect(refused.message).toContain(`served by ${testIdentity('own-owner').peerId}`);
      // The holder was not told to load anything else; the model list still names the owner's source.
      await sleep(100);
      expect(owner.all('assign')).toEqual([assigned]);
      expect(owner.all('unassign')).toEqual([]);
      thief.send({ type: 'models' });
      expect((await thief.next('models')).models.map((m) => m.model.source)).toEqual([spec.source]);
      // The owner changes its own model.
      owner.send({ type: 'serve', model: { ...spec, source: 'https://models.example/owned-v2' } });
      await owner.next('assign', (m) => m.model.source === 'https://models.example/owned-v2');
    } finally {
      for (const c of clients) await c.close();
      await server.close();
    }
  });
});

describe('a network governed by its owner', () => {
  it('only listed keys serve new models, from the owner\'s sources; only a model\'s server or the owner withdraws it; only the owner sets the policy', async () => {
    const server = await startSignalingServer({ owner: testIdentity('gov-owner').peerId });
    const clients: TestClient[] = [];
    const join = (name: string, memoryBudgetMB: number) => joinRaw(server.wsUrl, 'gov', name, memoryBudgetMB, clients);
    const spec = (modelId: string): ModelSpec => ({ modelId, source: `https://models.example/${modelId}`, numLayers: 4, hiddenSize: 64, layerBytes: 100 * 1024 * 1024, weightDtype: 'f16', replication: 1 });
    try {
      // A stranger joined first, yet the operator's key owns the network.
      const stranger = await join('gov-stranger', 0);
      expect(stranger.all('welcome')[0]!.owner).toBe(testIdentity('gov-owner').peerId);
      const holder = await join('gov-holder', 1024);
      const owner = await join('gov-owner', 0);
      const listed = await join('gov-listed', 0);
      stranger.send({ type: 'policy', servers: 'anyone' });
      expect(await stranger.next('error', (e) => e.ref === 'policy')).toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
      owner.send({ type: 'policy', servers: [testIdentity('gov-listed').peerId], sources: ['https://models.example/listed'] });
      expect(await owner.next('policy')).toMatchObject({ owner: testIdentity('gov-owner').peerId, servers: [testIdentity('gov-listed').peerId], sources: ['https://models.example/listed'] });
      // Even a listed peer serves only from the sources the owner narrowed the server's rule to.
      listed.send({ type: 'serve', model: spec('elsewhere') });
      expect(await listed.next('error', (e) => e.ref === 'serve')).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('its owner takes weights only from') });

      stranger.send({ type: 'serve', model: spec('unlisted') });
      expect(await stranger.next('error', (e) => e.ref === 'serve')).toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
      listed.send({ type: 'serve', model: spec('listed') });
      expect((await holder.next('assign')).model.modelId).toBe('listed');

      stranger.send({ type: 'withdraw', modelId: 'listed' });
      expect(await stranger.next('error', (e) => e.ref === 'withdraw')).toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
      stranger.send({ type: 'withdraw', modelId: 'never-served' });
      expect(await stranger.next('error', (e) => e.ref === 'withdraw')).toMatchObject({ code: 'ERR_UNKNOWN_MODEL' });
      await sleep(100);
      expect(holder.all('unassign')).toEqual([]);

      const view = (await (await fetch(`${server.httpUrl}/api/networks/gov`)).json()) as { owner: string; servers: string[] };
      expect(view).toMatchObject({ owner: testIdentity('gov-owner').peerId, servers: [testIdentity('gov-listed').peerId], sources: ['https://models.example/listed'] });

      // The owner withdraws a model it did not serve: its holder unloads it, the list no longer has it.
      owner.send({ type: 'withdraw', modelId: 'listed' });
      expect(await holder.next('unassign')).toEqual({ type: 'unassign', modelId: 'listed' });
      await owner.next('models', (m) => !m.models.some((c) => c.model.modelId === 'listed'));
    } finally {
      for (const c of clients) await c.close();
      await server.close();
    }
  });

  it('without an operator\'s key, a new network belongs to its first peer', async () => {
    const server = await startSignalingServer();
    const clients: TestClient[] = [];
    try {
      const first = await joinRaw(server.wsUrl, 'fresh', 'fresh-first', 0, clients);
      const second = await joinRaw(server.wsUrl, 'fresh', 'fresh-second', 0, clients);
      for (const c of [first, second]) expect(c.all('welcome')[0]!.owner).toBe(testIdentity('fresh-first').peerId);
      first.send({ type: 'policy', servers: [] });
      expect(await first.next('policy')).toMatchObject({ servers: [] });
      second.send({ type: 'serve', model: { modelId: 'm', source: 'https://models.example/m', numLayers: 2, hiddenSize: 64, layerBytes: 1 << 20, weightDtype: 'f32', replication: 1 } });
      expect(await second.next('error', (e) => e.ref === 'serve')).toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
    } finally {
      for (const c of clients) await c.close();
      await server.close();
    }
  });
});

describe('a hop that blames someone else', () => {
  it('gets itself, not the peer it names, excluded from routes', async () => {
    const net = await startGridNet();
    try {
      const honest = await net.peer('blame', 'blame-honest');
      await honest.assign(await net.spec('tiny-llama'), 0, 4);
      const bystander = await net.join('blame', 'blame-bystander', 0);
      // A hop that acknowledges sessions and answers every input with a fail blaming a bystander.
      const liar = await net.join('blame', 'blame-liar', 0);
      liar.on('frame', (from, frame) => {
        if (frame.type === ServingFrame.session) return void liar.send(from, ServingFrame.session, frame.payload).catch(() => {});
        if (frame.type !== ServingFrame.forward) return;
        const ids = new DataView(frame.payload.buffer, frame.payload.byteOffset);
        const sessionId = ids.getUint32(4, true).toString(16).padStart(8, '0') + ids.getUint32(0, true).toString(16).padStart(8, '0');
        const failure = { sessionId, requestId: ids.getUint32(8, true), peerId: liar.peerId, code: 'ERR_SHAPE_MISMATCH', message: 'blame the bystander', blame: bystander.peerId };
        void liar.send(from, ServingFrame.fail, new TextEncoder().encode(JSON.stringify(failure))).catch(() => {});
      });
      const client = await net.join('blame', 'blame-client', 0);
      const route = (p: string) => [{ peerId: p, start: 0, end: 4 }];
      const chain = await net.chain(client, 'tiny-llama', [route(liar.peerId), route(honest.peerId)]);
      const g = (await net.model('tiny-llama')).golden[0]!;
      const result = await chain.generate(await net.head('tiny-llama'), g.ids, { maxTokens: g.greedy.length, temperature: 0 });
      expect(result.tokens).toEqual(g.greedy);
      expect(chain.badPeers()).toEqual([liar.peerId]);
    } finally {
      await net.close();
    }
  });
});

describe('links opened and left unused', () => {
  it('cannot hold a peer\'s link slots: idle links make room and are closed; held ones stay', async () => {
    const server = await startSignalingServer({ heartbeatMs: 60_000 });
    const meshes: Mesh[] = [];
    const join = async (peerId: string, extra: Partial<MeshOptions> = {}) => {
      const mesh = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network: 'links', capabilities: CAPS, autoConnect: false, identity: testIdentity(peerId), ...extra });
      meshes.push(mesh);
      await mesh.start();
      return mesh;
    };
    try {
      const victim = await join('links-victim', { maxConnections: 2, idleLinkMs: 800 });
      const [b, c, d] = [await join('links-b'), await join('links-c'), await join('links-d')];
      await waitFor(() => victim.peers().length === 3, 5000, 'directory');
      await victim.connect(b.peerId);
      await sleep(20);
      await victim.connect(c.peerId);
      const release = victim.hold(c.peerId); // c's link carries a session's traffic elsewhere
      // Both slots taken; the quiet one makes room for a newcomer once idle for an eighth of 800 ms.
      await sleep(150);
      await victim.connect(d.peerId);
      expect(victim.connectedPeers().sort()).toEqual([c.peerId, d.peerId].sort());
      // Past idleLinkMs, the sweep closes the idle link and keeps the held one.
      await waitFor(() => !victim.connectedPeers().includes(d.peerId), 3000, 'idle link closed');
      expect(victim.connectedPeers()).toEqual([c.peerId]);
      release();
      await waitFor(() => victim.connectedPeers().length === 0, 3000, 'released link closed once idle');
      // A later send opens a new link.
      await victim.send(b.peerId, FrameType.data, new Uint8Array(8));
      expect(victim.connectedPeers()).toEqual([b.peerId]);
    } finally {
      for (const m of meshes) m.close();
      await server.close();
    }
  });
});

describe('session setups without the coordinator\'s ticket', () => {
  it('are refused by a peer the coordinator assigned; a ticket for another route or client does not pass; 20,000 leave nothing', async () => {
    const net = await startGridNet();
    try {
      const peer = await net.peer('tickets', 'tickets-peer');
      const client = await net.join('tickets', 'tickets-client', 0);
      let ready = false;
      client.signaling.on('models', (models) => (ready = models.some((m) => m.ready.every((r) => r > 0))));
      client.signaling.send({ type: 'serve', model: await net.spec('tiny-llama') });
      await waitFor(() => ready, 30_000, 'model ready');
      const route = await client.signaling.requestRoute('tiny-llama');
      expect(route.ticket).toBeDefined();
      const frames: Frame[] = [];
      client.on('frame', (_from, f) => frames.push(f));
      const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
      const setup = (extra: Partial<SessionSetup>): SessionSetup => ({ sessionId: randomSessionId(), modelId: 'tiny-llama', hops: route.hops, client: client.peerId, ...extra });
      const answer = async (s: SessionSetup) => {
        frames.length = 0;
        await client.send(peer.peerId, ServingFrame.session, json(s));
        await waitFor(() => frames.length > 0, 5000, 'an answer');
        const f = frames[0]!;
        return f.type === ServingFrame.session ? 'ack' : (JSON.parse(new TextDecoder().decode(f.payload)) as { code: string }).code;
      };
      expect(await answer(setup({}))).toBe('ERR_PERMISSION_DENIED'); // no ticket
      // The ticket signs the route as given: a route that adds a next hop for the peer to link to fails.
      const stranger = await net.join('tickets', 'tickets-stranger', 0);
      const longer = [{ ...route.hops[0]!, end: 2 }, { peerId: stranger.peerId, start: 2, end: 4 }];
      expect(await answer(setup({ hops: longer, ticket: route.ticket }))).toBe('ERR_PERMISSION_DENIED');
      // The ticket as signed, for this client: accepted.
      expect(await answer(setup({ ticket: route.ticket }))).toBe('ack');
      expect(peer.sessionCount).toBe(1);

      // Another peer cannot use the ticket it saw: not for itself, nor charged to its owner.
      const seen: Frame[] = [];
      stranger.on('frame', (_from, f) => seen.push(f));
      const codes = () => seen.filter((f) => f.type === ServingFrame.fail).map((f) => (JSON.parse(new TextDecoder().decode(f.payload)) as { code: string }).code);
      await stranger.send(peer.peerId, ServingFrame.session, json(setup({ client: stranger.peerId, ticket: route.ticket })));
      await stranger.send(peer.peerId, ServingFrame.session, json(setup({ ticket: route.ticket })));
      await waitFor(() => codes().length === 2, 5000, 'both refused');
      expect(codes().sort()).toEqual(['ERR_INVALID_ARGUMENT', 'ERR_PERMISSION_DENIED']);

      // 20,000 setups without a ticket: each refused, none kept, memory flat.
      seen.length = 0;
      const heapBefore = process.memoryUsage().heapUsed;
      for (let i = 0; i < 20_000; i++) void stranger.send(peer.peerId, ServingFrame.session, json(setup({ client: stranger.peerId }))).catch(() => {});
      await waitFor(() => seen.length >= 20_000, 60_000, 'every setup answered');
      expect(new Set(codes())).toEqual(new Set(['ERR_PERMISSION_DENIED']));
      expect(seen.some((f) => f.type === ServingFrame.session)).toBe(false);
      expect(peer.sessionCount).toBe(1);
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
    } finally {
      await net.close();
    }
  });
});

describe('accusations a socket sends', () => {
  it('may be large only when they are accusations, are rate limited before parsing, and are checked by schema', async () => {
    const server = await startSignalingServer({ heartbeatMs: 60_000, messagesPerSecond: 1000 });
    const clients: TestClient[] = [];
    try {
      const c = await joinRaw(server.wsUrl, 'accuse', 'accuse-sender', 0, clients);
      const pad = 'x'.repeat(300_000);
      // A large frame of another type is refused by size, even dressed as an accusation.
      c.send(JSON.stringify({ type: 'route', requestId: 1, modelId: 'm', pad }));
      await c.next('error', (e) => e.code === 'ERR_FRAME_TOO_LARGE');
      c.send(`{"type":"accuse","type":"route","requestId":2,"modelId":"m","pad":"${pad}"}`);
      await c.next('error', (e) => e.code === 'ERR_FRAME_TOO_LARGE' && e.ref === 'route');
      // A large accusation that is not JSON, or not an accusation's shape, is named.
      c.send(`{"type":"accuse",${pad}`);
      await c.next('error', (e) => e.code === 'ERR_MALFORMED_JSON');
      c.send(JSON.stringify({ type: 'accuse', id: 1, modelId: 'm', requestId: 1, segments: [], pad }));
      await c.next('error', (e) => e.code === 'ERR_INVALID_MESSAGE' && e.ref === 'accuse');
      // Repeated: past the burst, refused before parsing.
      for (let i = 0; i < 6; i++) c.send(JSON.stringify({ type: 'accuse', id: i, pad }));
      await c.next('error', (e) => e.code === 'ERR_RATE_LIMITED' && e.ref === 'accuse');
      // Above the hard limit the socket is closed.
      c.send(JSON.stringify({ type: 'accuse', id: 9, pad: 'y'.repeat(1_100_000) }));
      expect((await c.closed).code).toBe(1009);
      expect(c.invalid).toEqual([]);
    } finally {
      for (const x of clients) await x.close();
      await server.close();
    }
  });
});
