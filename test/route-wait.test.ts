// Patient failover: when the coordinator has no route because the peers assigned the missing layers
// are still loading them (a replacement that just joined), the client asks again with backoff for a
// bounded time instead of failing; with a layer no peer is assigned it fails at once. The decision
// runs on the real RouteRunner over a stand-in mesh and route source, then end to end through a
// real coordinator whose peers load their layers slowly.
import { EventEmitter } from 'node:events';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { layerOutlook, RemoteChain, RemoteModel, signalingRoutes, type LayerOutlook, type RouteSource, type RouteWaitEvent } from '../client/grid/index.ts';
import type { Mesh } from '../client/mesh/index.ts';
import type { Route } from '../client/mesh/signaling-client.ts';
import { AigridError, ServingFrame, type ModelCoverage } from '../protocol/index.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';

const MB = 1024 * 1024;

/** Just what a RouteRunner uses of a mesh; every send is recorded and refused (no peer is there). */
function standInMesh(): { mesh: Mesh; sent: { to: string; type: number }[]; signaling: EventEmitter } {
  const sent: { to: string; type: number }[] = [];
  const events = new EventEmitter();
  const signaling = new EventEmitter();
  const mesh = Object.assign(events, {
    peerId: 'the-client',
    signaling,
    hold: () => () => {},
    link: () => undefined,
    send: (to: string, type: number) => {
      sent.push({ to, type });
      return Promise.reject(new Error('no such peer here'));
    },
  });
  return { mesh: mesh as unknown as Mesh, sent, signaling };
}

/** A route source refused ERR_NO_ROUTE `refusals` times, then answering a one-hop route. */
function source(refusals: number, outlook: LayerOutlook | (() => LayerOutlook)): RouteSource & { asked: number; checked: number } {
  const state = { asked: 0, checked: 0 };
  const routes = (async (): Promise<Route> => {
    state.asked++;
    if (state.asked <= refusals) throw new AigridError('ERR_NO_ROUTE', `route ${state.asked}: no ready peer holds layers 3 of model m (3 of 4 assigned peers ready)`);
    return { hops: [{ peerId: 'peer-x', start: 0, end: 4 }] };
  }) as unknown as RouteSource & { asked: number; checked: number };
  routes.outlook = async () => {
    state.checked++;
    return typeof outlook === 'function' ? outlook() : outlook;
  };
  return Object.defineProperties(routes, {
    asked: { get: () => state.asked },
    checked: { get: () => state.checked },
  });
}

function model(routes: RouteSource, options: { routeWaitMs?: number } = {}) {
  const { mesh, sent, signaling } = standInMesh();
  const waits: RouteWaitEvent[] = [];
  const runner = new RemoteModel({ mesh, modelId: 'm', numLayers: 4, hiddenSize: 8, vocabSize: 16, routes, maxFailovers: 0, onRouteWait: (e) => waits.push(e), ...options });
  const step = () => runner.step(new Uint32Array([1, 2]), new Uint32Array([0, 1]), 's');
  return { runner, step, sent, waits, signaling };
}

describe('the decision from coverage', () => {
  const coverage = (assigned: number[], ready: number[]): ModelCoverage => ({ model: {} as ModelCoverage['model'], assigned, ready });
  it('waits only when every layer is assigned and some assigned peer is not ready', () => {
    expect(layerOutlook(coverage([2, 2, 2, 2], [1, 1, 1, 0]))).toBe('loading'); // a replacement loads layer 3
    expect(layerOutlook(coverage([2, 2, 2, 2], [2, 2, 2, 2]))).toBe('ready'); // the refusal was for our exclusions
    expect(layerOutlook(coverage([2, 2, 2, 0], [1, 1, 1, 0]))).toBe('unserved'); // nobody is assigned layer 3
    expect(layerOutlook(coverage([0, 0], [0, 0]))).toBe('unserved'); // no placement (memory short)
    expect(layerOutlook(undefined)).toBe('unserved'); // not served (withdrawn)
    // A replaced hop's layers alone.
    expect(layerOutlook(coverage([2, 2, 1, 1], [1, 2, 1, 1]), { start: 2, end: 4 })).toBe('ready');
    expect(layerOutlook(coverage([2, 2, 1, 1], [1, 2, 1, 1]), { start: 0, end: 2 })).toBe('loading');
    expect(layerOutlook(coverage([2, 2, 0, 1], [1, 2, 0, 1]), { start: 0, end: 2 })).toBe('loading');
  });
});

describe('RouteRunner waiting for loading peers', () => {
  it('fails at once when a layer has no assigned peer', async () => {
    const routes = source(Infinity, 'unserved');
    const { runner, step, waits } = model(routes);
    const t0 = Date.now();
    await expect(step()).rejects.toMatchObject({ code: 'ERR_NO_ROUTE', message: expect.stringMatching(/^route 1: no ready peer holds layers 3[^(]*\([^(]*$/) });
    expect(Date.now() - t0).toBeLessThan(150);
    expect([routes.asked, routes.checked, waits.length]).toEqual([1, 1, 0]);
    runner.close();
  });

  it('asks once more at once when every assigned peer is ready (they may have become ready since)', async () => {
    const late = source(1, 'ready');
    const first = model(late);
    await expect(first.step()).rejects.toMatchObject({ code: 'ERR_PEER_CLOSED' }); // the route came; the stand-in has no peer
    expect([late.asked, first.waits.length]).toEqual([2, 0]);
    first.runner.close();
    // Refused again: the exclusions are the client's own, and waiting would not help.
    const ours = source(Infinity, 'ready');
    const second = model(ours);
    const t0 = Date.now();
    await expect(second.step()).rejects.toMatchObject({ code: 'ERR_NO_ROUTE', message: expect.stringMatching(/^route 2: [^(]*\([^(]*$/) });
    expect(Date.now() - t0).toBeLessThan(150);
    expect([ours.asked, ours.checked, second.waits.length]).toEqual([2, 1, 0]);
    second.runner.close();
  });

  it('asks again with growing pauses while the layers load, then takes the route', async () => {
    const routes = source(3, 'loading');
    const { runner, step, sent, waits } = model(routes);
    // The route came on the fourth ask: the runner set the session up on it (refused here: no peer).
    await expect(step()).rejects.toMatchObject({ code: 'ERR_PEER_CLOSED', message: expect.stringContaining('setting up peer-x') });
    expect(routes.asked).toBe(4);
    expect(waits.map((w) => w.error.message)).toEqual([1, 2, 3].map((n) => expect.stringMatching(new RegExp(`^route ${n}: `))));
    expect(waits[0]!.pauseMs).toBeGreaterThanOrEqual(150);
    expect(waits[0]!.pauseMs).toBeLessThanOrEqual(250);
    expect(waits[2]!.pauseMs).toBeGreaterThan(waits[0]!.pauseMs);
    expect(sent.filter((s) => s.type === ServingFrame.session).map((s) => s.to)).toEqual(['peer-x']);
    runner.close();
  });

  it('gives up after routeWaitMs, saying how long it waited', async () => {
    const routes = source(Infinity, 'loading');
    const { runner, step, waits } = model(routes, { routeWaitMs: 700 });
    const t0 = Date.now();
    await expect(step()).rejects.toMatchObject({ code: 'ERR_NO_ROUTE', message: expect.stringMatching(/asked \d+ times over \d+ ms, waiting for peers loading the layers/) });
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(650);
    expect(took).toBeLessThan(1500);
    expect(waits.length).toBeGreaterThanOrEqual(2);
    expect(waits.at(-1)!.waitedMs + waits.at(-1)!.pauseMs).toBeLessThanOrEqual(700);
    runner.close();
  });

  it('stops waiting when a layer is left with no peer assigned (its peer left, memory is short)', async () => {
    let checks = 0;
    const routes = source(Infinity, () => (++checks < 3 ? 'loading' : 'unserved'));
    const { runner, step, waits } = model(routes);
    await expect(step()).rejects.toMatchObject({ code: 'ERR_NO_ROUTE', message: expect.stringContaining('waiting until some layer had no peer assigned') });
    expect([routes.asked, waits.length]).toEqual([3, 2]);
    runner.close();
  });

  it('never waits with routeWaitMs 0, nor for a source that cannot tell (explicit routes)', async () => {
    const routes = source(Infinity, 'loading');
    const { runner, step, waits } = model(routes, { routeWaitMs: 0 });
    await expect(step()).rejects.toMatchObject({ code: 'ERR_NO_ROUTE' });
    expect([routes.asked, waits.length]).toEqual([1, 0]);
    runner.close();
    const blind = source(Infinity, 'loading');
    delete blind.outlook;
    const other = model(blind);
    await expect(other.step()).rejects.toMatchObject({ code: 'ERR_NO_ROUTE' });
    expect([blind.asked, other.waits.length]).toEqual([1, 0]);
    other.runner.close();
  });

  // On fake timers: what ends a pause is then certain, however loaded the machine is.
  it('asks again when the coordinator broadcasts the models (a peer became ready), not sooner than 100 ms after the last ask', async () => {
    vi.useFakeTimers();
    try {
      const routes = source(1, 'loading');
      const { runner, step, waits, signaling } = model(routes);
      const outcome = step().catch((err: unknown) => err);
      while (waits.length === 0) await vi.advanceTimersByTimeAsync(0);
      expect(waits[0]!.pauseMs).toBeGreaterThanOrEqual(150); // 200 ms, jittered by a quarter
      signaling.emit('models', []); // at once: broadcasts never make asks closer than 100 ms
      await vi.advanceTimersByTimeAsync(99);
      expect(routes.asked).toBe(1);
      await vi.advanceTimersByTimeAsync(2);
      expect(routes.asked).toBe(2);
      expect(await outcome).toMatchObject({ code: 'ERR_PEER_CLOSED' }); // the route came; the stand-in has no peer
      runner.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('asks again at a broadcast once 100 ms have passed since the last ask', async () => {
    vi.useFakeTimers();
    try {
      const routes = source(1, 'loading');
      const { runner, step, waits, signaling } = model(routes);
      const outcome = step().catch((err: unknown) => err);
      while (waits.length === 0) await vi.advanceTimersByTimeAsync(0);
      await vi.advanceTimersByTimeAsync(120);
      expect(routes.asked).toBe(1);
      signaling.emit('models', []);
      await vi.advanceTimersByTimeAsync(0);
      expect(routes.asked).toBe(2);
      expect(await outcome).toMatchObject({ code: 'ERR_PEER_CLOSED' });
      runner.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses a routeWaitMs that is not a number of milliseconds', () => {
    for (const bad of [-1, Number.NaN, Infinity]) expect(() => model(source(0, 'loading'), { routeWaitMs: bad })).toThrow(/routeWaitMs must be/);
  });

  it('ends a wait when the client closes', async () => {
    const routes = source(Infinity, 'loading');
    const { runner, step, waits } = model(routes);
    const running = step();
    await waitFor(() => waits.length > 0, 2000, 'a wait');
    const t0 = Date.now();
    runner.close();
    await expect(running).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(Date.now() - t0).toBeLessThan(100);
  });
});

describe('through a real coordinator', () => {
  let net: GridNet;
  beforeAll(async () => {
    net = await startGridNet();
  });
  afterAll(async () => {
    await net?.close();
  });

  it('a generation asked for while the assigned peers still load waits for them and gives the golden tokens', async () => {
    const network = 'patient';
    net.files.faults.delayMs = 150; // every weight request is slow: loading takes a while
    try {
      await Promise.all(['slow-a', 'slow-b'].map((id) => net.peer(network, id, {})));
      const client = await net.join(network, 'patient-client', 0);
      const spec = { ...(await net.spec('tiny-llama')), layerBytes: MB, replication: 1 };
      const coverage: ModelCoverage[] = [];
      client.signaling.on('models', (models) => coverage.push(...models.filter((m) => m.model.modelId === spec.modelId)));
      client.signaling.send({ type: 'serve', model: spec });
      await waitFor(() => coverage.some((c) => c.assigned.every((a) => a > 0)), 10_000, 'the model placed');
      expect(coverage.at(-1)!.ready.every((r) => r > 0)).toBe(false);
      const waits: RouteWaitEvent[] = [];
      const chain = new RemoteChain({ mesh: client, modelId: spec.modelId, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, routes: signalingRoutes(client.signaling, spec.modelId), onRouteWait: (e) => waits.push(e) });
      const g = (await net.model('tiny-llama')).golden[0]!;
      const result = await chain.generate(await net.head('tiny-llama'), g.ids, { maxTokens: g.greedy.length, temperature: 0 });
      expect(result.tokens).toEqual(g.greedy);
      expect(waits.length).toBeGreaterThan(0);
      expect(waits[0]!.error.message).toMatch(/assigned peers ready/);
      chain.close();
    } finally {
      net.files.faults.delayMs = 0;
    }
  });

  it('fails at once when no peer is assigned the layers', async () => {
    const network = 'hopeless';
    const client = await net.join(network, 'hopeless-client', 0); // offers no memory: nothing can be placed
    const spec = { ...(await net.spec('tiny-llama')), layerBytes: MB, replication: 1 };
    client.signaling.send({ type: 'serve', model: spec });
    await waitFor(async () => (await client.signaling.listModels()).some((m) => m.model.modelId === spec.modelId), 5000, 'the model listed');
    const waits: RouteWaitEvent[] = [];
    const chain = new RemoteChain({ mesh: client, modelId: spec.modelId, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, routes: signalingRoutes(client.signaling, spec.modelId), onRouteWait: (e) => waits.push(e) });
    const t0 = Date.now();
    await expect(chain.generate(await net.head('tiny-llama'), [1, 2], { maxTokens: 2, temperature: 0 })).rejects.toMatchObject({ code: 'ERR_NO_ROUTE' });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(waits).toEqual([]);
    chain.close();
  });
});
