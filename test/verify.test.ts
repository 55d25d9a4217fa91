// Verified results: a client spot-checks sessions by replaying them on a route that swaps one hop,
// with a third route to break a tie. Peers that perturb their outputs slightly, return zeros, or
// return another session's rows are caught and excluded by the coordinator within 20 checked
// sessions, after which every generation gives the golden tokens; honest peers on the CPU and on
// WebGPU (SwiftShader), checked against each other, are never accused over 200 checked sessions.
import { afterEach, describe, expect, it } from 'vitest';
import { GridPeer, majority, meshRoutes, RemoteChain, type CheckEvent, type RouteOptions } from '../client/grid/index.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import type { Mesh } from '../client/mesh/index.ts';
import { connect } from '../client/sdk/node.ts';
import { lie, type Lie } from './helpers/grid-liar.ts';
import { signLeaf, signTicket } from '../protocol/index.ts';
import { idOf, testIdentity } from './helpers/identities.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { gpuContext } from './helpers/model-runtime.ts';
import { waitFor } from './helpers/wait.ts';

const MB = 1024 * 1024;
let net: GridNet | undefined;

afterEach(async () => {
  await net?.close();
  net = undefined;
});

interface Trust {
  reputation: Record<string, { verified: number; wrong: number; excluded: boolean }>;
}

/** Serves tiny-llama whole on every peer of `network` (one layer per MB, four MB each). */
async function serveEverywhere(grid: GridNet, network: string, client: Mesh, holders: number): Promise<void> {
  let ready = false;
  client.signaling.on('models', (models) => (ready = models.some((m) => m.ready.every((r) => r >= holders))));
  client.signaling.send({ type: 'serve', model: { ...(await grid.spec('tiny-llama')), layerBytes: MB, replication: holders } });
  await waitFor(() => ready, 60_000, `tiny-llama ready on ${holders} peers`);
}

/** A client chain over the coordinator's routes for tiny-llama's 4 layers. */
function routedChain(client: Mesh, hiddenSize: number, options: Pick<RouteOptions, 'verify' | 'onFailover'> = {}): RemoteChain {
  return new RemoteChain({ mesh: client, modelId: 'tiny-llama', numLayers: 4, hiddenSize, routes: meshRoutes(client, 'tiny-llama'), ...options });
}

/** ...that checks every session and reports verdicts. */
function checkingChain(client: Mesh, events: CheckEvent[], hiddenSize: number): RemoteChain {
  return routedChain(client, hiddenSize, {
    verify: {
      share: 1,
      newcomerShare: 1,
      concurrent: 1,
      report: (verdicts) => void client.signaling.send({ type: 'verdict', modelId: 'tiny-llama', verdicts }),
      onCheck: (e) => events.push(e),
    },
  });
}

/**
 * Peers with room for two layers each (half of tiny-llama) in `network`: a liar whose id wins the
 * coordinator's ties (as an attacker grinding keys would, so that it is on the routes) and
 * `honest` others. The liar comes first.
 */
async function halfPeers(grid: GridNet, network: string, prefix: string, honest: number): Promise<GridPeer[]> {
  const names = Array.from({ length: honest }, (_, i) => `${prefix}-${i}`);
  const liarName = Array.from({ length: 64 }, (_, i) => `${prefix}-liar-${i}`).find((name) => names.every((h) => idOf(name) < idOf(h)))!;
  const peers: GridPeer[] = [];
  for (const name of [liarName, ...names]) {
    peers.push(new GridPeer({ mesh: await grid.join(network, name, 2), backend: 'cpu', open: checkpointOpener(openCheckpointNode, { cache: false }) }));
  }
  return peers;
}

async function trust(grid: GridNet, network: string): Promise<Trust['reputation']> {
  return ((await (await fetch(`${grid.server.httpUrl}/api/networks/${network}`)).json()) as Trust).reputation;
}

describe('the majority of three routes', () => {
  it('names a clear minority only: one route far from two that agree', () => {
    expect(majority(0.05, 0.05, 0, 0.02)).toBe('caught');
    expect(majority(0.07, 0, 0.07, 0.02)).toBe('replacement-wrong');
    // All three through one noisy liar: about equally far apart, nobody blamed.
    expect(majority(0.025, 0.018, 0.03, 0.02)).toBe('inconclusive');
    expect(majority(0.05, 0.021, 0.05, 0.02)).toBe('inconclusive'); // the pair itself disagrees
    expect(majority(0.03, 0.03, 0.015, 0.02)).toBe('inconclusive'); // not twice, let alone 3x, apart
    expect(majority(Infinity, Infinity, 0.001, 0.02)).toBe('caught');
  });
});

describe('spot-checks of the routes\' work', () => {
  for (const how of ['perturb', 'zeros', 'other-session'] as Lie[]) {
    it(`catch and exclude a peer whose outputs are ${how === 'perturb' ? 'perturbed slightly' : how === 'zeros' ? 'zeros' : 'another session\'s rows'}, within 20 checked sessions`, async () => {
      net = await startGridNet();
      const network = `liar-${how}`;
      const honest = ['honest-a', 'honest-b', 'honest-c'].map((name) => `${how}-${name}`);
      // The coordinator breaks ties between equal peers by id; the liar takes an id that wins
      // them, as an attacker grinding keys would, so that it is on the routes.
      const liarName = Array.from({ length: 64 }, (_, i) => `${how}-liar-${i}`).find((name) => honest.every((h) => idOf(name) < idOf(h)))!;
      const peers: GridPeer[] = [];
      for (const name of [...honest, liarName]) peers.push(await net.peer(network, name, {}));
      const liar = peers[3]!;
      lie(liar.mesh, how);
      const client = await net.join(network, `${how}-client`, 0);
      await serveEverywhere(net, network, client, 4);
      const events: CheckEvent[] = [];
      const model = await net.model('tiny-llama');
      const head = await net.head('tiny-llama');
      const chain = checkingChain(client, events, head.config.hiddenSize);
      let checked = 0;
      for (let s = 0; s < 20 && !(await trust(net, network))[liar.peerId]?.excluded; s++) {
        const g = model.golden[s % model.golden.length]!;
        await chain.generate(head, g.ids, { maxTokens: 3, temperature: 0 });
        await waitFor(() => events.length > checked, 20_000, `check of session ${s}`);
        checked = events.length;
        // Let the verdicts reach the coordinator before asking whether the liar is out.
        await new Promise((r) => setTimeout(r, 50));
      }
      const reputation = await trust(net, network);
      expect(reputation[liar.peerId]?.excluded, JSON.stringify(events.map((e) => [e.outcome, e.differences.map((d) => d.toFixed(4)), e.accusation]))).toBe(true);
      expect(checked).toBeLessThanOrEqual(20);
      expect(events.flatMap((e) => e.wrong).every((p) => p === liar.peerId)).toBe(true);
      for (const honest of peers.slice(0, 3)) expect(reputation[honest.peerId]).toMatchObject({ wrong: 0, excluded: false });
      // Out of routes and placement: every generation now gives the golden tokens.
      await waitFor(() => liar.status().length === 0, 10_000, 'the liar unassigned');
      for (const g of model.golden) {
        expect((await chain.generate(head, g.ids, { maxTokens: g.greedy.length, temperature: 0 })).tokens).toEqual(g.greedy);
      }
      chain.close();
    }, 120_000);
  }

  it('count a wrong result only on evidence: made-up clients with bare verdicts or forged evidence cannot push an honest peer out', async () => {
    net = await startGridNet();
    const network = 'sybils';
    const peers: GridPeer[] = [];
    for (const name of ['sybil-target-a', 'sybil-target-b']) peers.push(await net.peer(network, name, {}));
    const owner = await net.join(network, 'sybil-owner', 0);
    await serveEverywhere(net, network, owner, 2);
    const forger = testIdentity('not-the-coordinator');
    for (let c = 0; c < 12; c++) {
      const sybil = await net.join(network, `sybil-${c}`, 0);
      const route = await sybil.signaling.requestRoute('tiny-llama');
      // A bare verdict, repeated: never counted.
      for (let i = 0; i < 3; i++) sybil.signaling.send({ type: 'verdict', modelId: 'tiny-llama', verdicts: route.hops.map((h) => ({ peerId: h.peerId, result: 'wrong' as const })) });
      // Evidence on a route the coordinator never signed, with leaves the accused never signed.
      const leaf = await signLeaf(forger, { network, modelId: 'tiny-llama', sessionId: '00000000000000f0', client: sybil.peerId, start: 0, end: 4, requestId: 1 }, new Uint8Array(32), new Uint8Array(32));
      const forged = { ...leaf, peerId: route.hops[0]!.peerId };
      const segment = {
        hops: route.hops,
        ticket: await signTicket(forger, { network, modelId: 'tiny-llama', client: sybil.peerId, hops: route.hops, expires: Date.now() + 60_000 }),
        first: forged,
        last: forged,
        output: { shape: 'AAAAAAEAAQAB', valuesRoot: leaf.output, chunks: 1, picks: [{ index: 0, bytes: 'AAA', path: [] }] },
      };
      const judged = await sybil.signaling.accuse({ modelId: 'tiny-llama', requestId: 1, segments: [segment, segment, segment] });
      expect(judged).toMatchObject({ counted: false, code: 'ERR_BAD_EVIDENCE' });
      // A forger is not heard for a while, whatever it sends next.
      expect(await sybil.signaling.accuse({ modelId: 'tiny-llama', requestId: 1, segments: [segment, segment, segment] })).toMatchObject({ counted: false, code: 'ERR_PERMISSION_DENIED' });
    }
    const reputation = await trust(net, network);
    for (const p of peers) expect(reputation[p.peerId]).toMatchObject({ wrong: 0, excluded: false });
    for (const p of peers) p.close();
  }, 120_000);

  it('refuse the frames of a hop that signs another output than it sends, and take another route', async () => {
    net = await startGridNet();
    const network = 'unsigned-lie';
    const peers = await halfPeers(net, network, 'unsigned', 3);
    const liar = peers[0]!;
    lie(liar.mesh, 'perturb', 'honest');
    const client = await net.join(network, 'unsigned-client', 0);
    await serveEverywhere(net, network, client, 2);
    const head = await net.head('tiny-llama');
    const model = await net.model('tiny-llama');
    const failovers: { blame?: string; message: string }[] = [];
    const chain = routedChain(client, head.config.hiddenSize, { onFailover: (e) => failovers.push({ blame: e.blame, message: e.error.message }) });
    for (const g of model.golden.slice(0, 2)) {
      expect((await chain.generate(head, g.ids, { maxTokens: g.greedy.length, temperature: 0 })).tokens).toEqual(g.greedy);
    }
    // The liar was on the first route (it wins ties by id); the next hop refused its frames.
    expect(failovers[0], JSON.stringify(failovers)).toMatchObject({ blame: liar.peerId });
    expect(failovers[0]!.message).toMatch(/signed leaf/);
    chain.close();
    for (const p of peers) p.close();
  }, 120_000);

  it('never blame a hop beside a liar that lies only when not replayed: its own signed work clears it', async () => {
    net = await startGridNet();
    const network = 'liar-unless-replayed';
    const peers = await halfPeers(net, network, 'replayed', 5);
    const liar = peers[0]!;
    lie(liar.mesh, 'perturb', 'what-it-sends', 'unless-replayed');
    const client = await net.join(network, 'replayed-client', 0);
    await serveEverywhere(net, network, client, 3);
    const events: CheckEvent[] = [];
    const head = await net.head('tiny-llama');
    const model = await net.model('tiny-llama');
    // Every session checked, always at the hop beside the liar (the draw picks the hop).
    const liarFirst = liar.status()[0]!.start === 0;
    const chain = routedChain(client, head.config.hiddenSize, {
      verify: { share: 1, newcomerShare: 1, concurrent: 1, random: () => (liarFirst ? 0.99 : 0), onCheck: (e) => events.push(e) },
    });
    for (let s = 0; s < 8; s++) {
      const g = model.golden[s % model.golden.length]!;
      // New prompts each time (another length), so the liar has not seen their outputs.
      await chain.generate(head, [...g.ids, ...Array.from({ length: s }, (_, i) => 40 + i)], { maxTokens: 2, temperature: 0 });
      await waitFor(() => events.length > s, 20_000, `check of session ${s}`);
    }
    const liarRoutes = events.filter((e) => e.peerId !== liar.peerId && e.outcome !== 'agreed' && e.outcome !== 'failed');
    const summary = JSON.stringify(events.map((e) => [e.outcome, e.peerId === liar.peerId, e.wrong.length, e.accusation]));
    // The routes disagree (the liar lied only the first time), but the checked hop's signed work
    // clears it: before the liar, its output agrees with its replacements'; after it, it was
    // given other input than they were. Nobody is blamed.
    expect(liarRoutes.length, summary).toBeGreaterThan(0);
    for (const e of liarRoutes) expect([e.outcome, e.wrong], summary).toEqual(['inconclusive', []]);
    const reputation = await trust(net, network);
    for (const p of peers.slice(1)) expect(reputation[p.peerId], summary).toMatchObject({ wrong: 0, excluded: false });
    chain.close();
    for (const p of peers) p.close();
  }, 120_000);

  it('catch a liar holding the first half of two-hop routes, checked or as a replacement; honest hops are never blamed', async () => {
    net = await startGridNet();
    const network = 'liar-first-half';
    // Six peers hold three copies of each half; the liar one of them.
    const peers = await halfPeers(net, network, 'half', 5);
    const liar = peers[0]!;
    lie(liar.mesh, 'perturb');
    const client = await net.join(network, 'half-client', 0);
    await serveEverywhere(net, network, client, 3);
    const events: CheckEvent[] = [];
    const head = await net.head('tiny-llama');
    const model = await net.model('tiny-llama');
    const chain = checkingChain(client, events, head.config.hiddenSize);
    for (let s = 0; s < 20 && !(await trust(net, network))[liar.peerId]?.excluded; s++) {
      const g = model.golden[s % model.golden.length]!;
      await chain.generate(head, g.ids, { maxTokens: 3, temperature: 0 });
      await waitFor(() => events.length > s, 20_000, `check of session ${s}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const reputation = await trust(net, network);
    expect(reputation[liar.peerId]?.excluded, JSON.stringify(events.map((e) => [e.outcome, e.peerId === liar.peerId]))).toBe(true);
    expect(events.flatMap((e) => e.wrong).every((p) => p === liar.peerId)).toBe(true);
    // A check of an honest hop never blames it: it agrees, has no clear majority (the liar adding
    // noise on every route), or catches the liar as the hop's replacement.
    for (const e of events.filter((e) => e.peerId !== liar.peerId)) {
      expect(e.wrong).not.toContain(e.peerId);
      if (e.outcome === 'replacement-wrong') expect(e.replacedBy).toEqual([liar.peerId]);
    }
    for (const p of peers.slice(1)) expect(reputation[p.peerId]).toMatchObject({ wrong: 0, excluded: false });
    chain.close();
    for (const p of peers) p.close();
  }, 120_000);

  it('check light sessions too: token ids in, logits out, the ends holding embedding and head', async () => {
    net = await startGridNet();
    for (const name of ['light-a', 'light-b', 'light-c']) await net.peer('light-checks', name, {});
    const events: CheckEvent[] = [];
    const grid = await connect({ signal: net.server.wsUrl, network: 'light-checks', verify: { share: 1, newcomerShare: 1, onCheck: (e) => events.push(e) } });
    try {
      await grid.serve({ source: `${net.files.url}/tiny-llama`, modelId: 'tiny-llama', replication: 3, light: true });
      await waitFor(async () => (await grid.models.list()).data[0]?.coverage.ready.every((r) => r === 3) ?? false, 60_000, 'light tiny-llama on three peers');
      const g = (await net.model('tiny-llama')).golden[0]!;
      const out = await grid.generate({ model: 'tiny-llama', prompt: g.ids, maxTokens: 3, temperature: 0, stopTokens: [] });
      expect(out.tokens).toEqual(g.greedy.slice(0, 3));
      await waitFor(() => events.length === 1, 20_000, 'the light session checked');
      expect(events[0]).toMatchObject({ outcome: 'agreed', wrong: [] });
      expect(events[0]!.replacedBy).toHaveLength(1);
    } finally {
      grid.close();
    }
  });

  it('leave aborted generations unchecked', async () => {
    net = await startGridNet();
    for (const name of ['abort-a', 'abort-b']) await net.peer('aborts', name, {});
    const client = await net.join('aborts', 'abort-client', 0);
    await serveEverywhere(net, 'aborts', client, 2);
    const events: CheckEvent[] = [];
    const head = await net.head('tiny-llama');
    const g = (await net.model('tiny-llama')).golden[0]!;
    const chain = checkingChain(client, events, head.config.hiddenSize);
    const controller = new AbortController();
    const aborted = await chain.generate(head, g.ids, { maxTokens: 8, temperature: 0, signal: controller.signal, onToken: (_t, step) => step === 1 && controller.abort() });
    expect(aborted.finishReason).toBe('abort');
    await new Promise((r) => setTimeout(r, 300));
    expect(events).toEqual([]);
    await chain.generate(head, g.ids, { maxTokens: 2, temperature: 0 });
    await waitFor(() => events.length === 1, 10_000, 'the finished one checked');
    expect(events[0]!.outcome).toBe('agreed');
    chain.close();
  });

  it('never accuse honest peers on the CPU and on WebGPU over 200 checked sessions', async () => {
    net = await startGridNet();
    const network = 'honest-mix';
    // One peer on each backend, each holding the whole model: every check compares the two.
    const cpu = await net.peer(network, 'cpu-a', {});
    const gpu = await net.peer(network, 'gpu-a', { backend: 'webgpu', gpu: await gpuContext() });
    const client = await net.join(network, 'honest-client', 0);
    await serveEverywhere(net, network, client, 2);
    const events: CheckEvent[] = [];
    const head = await net.head('tiny-llama');
    const model = await net.model('tiny-llama');
    const chain = checkingChain(client, events, head.config.hiddenSize);
    for (let s = 0; s < 200; s++) {
      // Two route asks per session (the route and the check's): paced under the server's 25 a second.
      const paced = new Promise((r) => setTimeout(r, 100));
      const g = model.golden[s % model.golden.length]!;
      const out = await chain.generate(head, g.ids, { maxTokens: 2, temperature: 0 });
      expect(out.tokens).toEqual(g.greedy.slice(0, 2));
      await waitFor(() => events.length > s, 20_000, `check of session ${s}`);
      await paced;
    }
    for (const e of events) expect([e.peerId, ...e.replacedBy].sort()).toEqual([cpu.peerId, gpu.peerId].sort());
    const others = events.filter((e) => e.outcome !== 'agreed');
    expect(others, JSON.stringify(others.slice(0, 3))).toEqual([]);
    expect(Math.max(...events.map((e) => e.differences[0]!))).toBeLessThan(0.02);
    const reputation = await trust(net, network);
    for (const record of Object.values(reputation)) expect(record).toMatchObject({ wrong: 0, excluded: false });
    chain.close();
  }, 300_000);
});
