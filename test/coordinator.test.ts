import type { ClientOptions } from 'ws';
import { describe, expect, it } from 'vitest';
import type { ModelSpec, ServerMessage } from '../protocol/index.ts';
import { useSignalingServer } from './helpers/server-fixture.ts';
import { CAPS, hello, sleep, TestClient } from './helpers/ws-client.ts';
import { idOf } from './helpers/identities.ts';
import { waitFor } from './helpers/wait.ts';

const fixture = useSignalingServer();
const { start } = fixture;

const MODEL: ModelSpec = {
  modelId: 'tiny-llama',
  source: 'https://models.example/tiny-llama',
  numLayers: 8,
  hiddenSize: 64,
  layerBytes: 100 * 1024 * 1024,
  weightDtype: 'f16',
  replication: 1,
};

/** Joins with a budget in layers of MODEL (100 MB each) and a speed. */
async function peer(peerId: string, layers: number, gflops = 10, options?: ClientOptions): Promise<TestClient> {
  const client = fixture.track(await TestClient.open(fixture.server.wsUrl, options));
  await client.hello(peerId, 'net', { ...CAPS, memoryBudgetMB: layers * 100, throughput: { gflops, backend: 'cpu' } });
  await client.next('welcome');
  return client;
}

type Assign = Extract<ServerMessage, { type: 'assign' }>;
const range = (m: Assign) => [m.start, m.end];

function ready(client: TestClient, m: Assign): void {
  client.send({ type: 'status', modelId: m.model.modelId, start: m.start, end: m.end, state: 'ready', sessions: 0, tokensServed: 0 });
}

describe('coordinator', () => {
  it('assigns layers by budget, and routes once peers report ready', async () => {
    await start();
    const a = await peer('peer-a', 4);
    const b = await peer('peer-b', 4);
    const tiny = await peer('peer-tiny', 0.5);
    a.send({ type: 'serve', model: MODEL });
    const [assignA, assignB] = [await a.next('assign'), await b.next('assign')];
    expect(assignA.model).toEqual(MODEL);
    expect(range(assignA)).toEqual([0, 4]);
    expect(range(assignB)).toEqual([4, 8]);
    const models = await tiny.next('models');
    expect(models.models).toEqual([{ model: MODEL, assigned: new Array(8).fill(1), ready: new Array(8).fill(0) }]);

    // Nobody is ready yet: the route request names the layers without a ready peer.
    tiny.send({ type: 'route', requestId: 1, modelId: MODEL.modelId });
    const none = await tiny.next('error');
    expect(none).toMatchObject({ code: 'ERR_NO_ROUTE', ref: 'route' });
    expect(none.message).toMatch(/route 1: no ready peer holds layers 0-7 of model tiny-llama \(0 of 2/);

    ready(a, assignA);
    const half = await tiny.next('models', (m) => m.models[0]!.ready[0] === 1);
    expect(half.models[0]!.ready).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
    tiny.send({ type: 'route', requestId: 2, modelId: MODEL.modelId });
    expect((await tiny.next('error')).message).toMatch(/layers 4-7 /);

    ready(b, assignB);
    await tiny.next('models', (m) => m.models[0]!.ready.every((r) => r === 1));
    tiny.send({ type: 'route', requestId: 3, modelId: MODEL.modelId });
    expect(await tiny.next('route')).toEqual({
      type: 'route',
      requestId: 3,
      modelId: MODEL.modelId,
      hops: [
        { peerId: idOf('peer-a'), start: 0, end: 4 },
        { peerId: idOf('peer-b'), start: 4, end: 8 },
      ],
      // Signed for the asker: hops the coordinator assigned accept a session only with it.
      ticket: { expires: expect.any(Number), signature: expect.stringMatching(/^[A-Za-z0-9_-]{86}$/) },
      // Keys with no verified work yet: the client checks these routes more often.
      newcomers: [idOf('peer-a'), idOf('peer-b')],
    });
    tiny.send({ type: 'route', requestId: 4, modelId: MODEL.modelId, start: 2, end: 6 });
    expect((await tiny.next('route')).hops).toEqual([
      { peerId: idOf('peer-a'), start: 2, end: 4 },
      { peerId: idOf('peer-b'), start: 4, end: 6 },
    ]);
    tiny.send({ type: 'route', requestId: 5, modelId: MODEL.modelId, exclude: [idOf('peer-b')] });
    expect((await tiny.next('error')).message).toMatch(/route 5: no ready peer holds layers 4-7/);
    expect(tiny.all('assign')).toEqual([]);

    const view = (await (await fetch(`${fixture.server.httpUrl}/api/networks/net`)).json()) as { models: unknown };
    expect(view.models).toEqual([{ model: MODEL, assigned: new Array(8).fill(1), ready: new Array(8).fill(1) }]);
  });

  it('gives a faster peer more layers, and serve is idempotent', async () => {
    await start();
    const fast = await peer('peer-fast', 8, 30);
    const slow = await peer('peer-slow', 8, 10);
    fast.send({ type: 'serve', model: MODEL });
    const [f, s] = [await fast.next('assign'), await slow.next('assign')];
    expect(f.end - f.start).toBe(6);
    expect(s.end - s.start).toBe(2);
    await fast.next('models');
    fast.send({ type: 'serve', model: MODEL });
    // The same spec again changes nothing: the sender alone gets the models back.
    await fast.next('models');
    fast.send({ type: 'ping', id: 1 });
    await fast.next('pong');
    expect([fast.all('assign').length, slow.all('assign').length, slow.all('models').length]).toEqual([1, 1, 1]);
  });

  it('re-places the layers of a peer that leaves, without moving the others needlessly', async () => {
    await start();
    const a = await peer('peer-a', 8);
    const b = await peer('peer-b', 4);
    a.send({ type: 'serve', model: MODEL });
    expect(range(await a.next('assign'))).toEqual([0, 4]);
    expect(range(await b.next('assign'))).toEqual([4, 8]);
    const c = await peer('peer-c', 4);
    // The newcomer takes a share of 2 or 3 layers (how ties between ids fall) inside one holder's
    // range; nobody else is reassigned.
    const { start: cStart, end: cEnd } = await c.next('assign');
    expect([2, 3]).toContain(cEnd - cStart);
    expect(cEnd <= 4 || cStart >= 4).toBe(true);
    await c.next('models');
    await b.close();
    // Layers 4-7 lost their only holder: a grows over them (it keeps 0-3 loaded).
    expect(range(await a.next('assign'))).toEqual([0, 8]);
    const view = (await (await fetch(`${fixture.server.httpUrl}/api/networks/net`)).json()) as { models: { assigned: number[] }[] };
    expect(view.models[0]!.assigned).toEqual(Array.from({ length: 8 }, (_, layer) => (layer >= cStart && layer < cEnd ? 2 : 1)));
    expect(c.all('assign')).toHaveLength(1);
    expect(c.all('unassign')).toEqual([]);
  });

  it('moves the layers of a peer that failed to load them to the others', async () => {
    await start();
    const a = await peer('peer-a', 8);
    const b = await peer('peer-b', 4);
    a.send({ type: 'serve', model: MODEL });
    const assignA = await a.next('assign');
    expect(range(assignA)).toEqual([0, 4]);
    expect(range(await b.next('assign'))).toEqual([4, 8]);
    b.send({ type: 'status', modelId: MODEL.modelId, start: 4, end: 8, state: 'failed', sessions: 0, tokensServed: 0, detail: 'out of memory' });
    expect(await b.next('unassign')).toEqual({ type: 'unassign', modelId: MODEL.modelId });
    // a grows over the failed peer's layers and keeps what it loaded.
    expect(range(await a.next('assign', (m) => m.end === 8))).toEqual([0, 8]);
    const view = (await (await fetch(`${fixture.server.httpUrl}/api/networks/net`)).json()) as { serving: { peerId: string }[] };
    expect(view.serving.map((s) => s.peerId)).toEqual([idOf('peer-a')]);
  });

  it('re-places after a heartbeat timeout', async () => {
    await start({ heartbeatMs: 300 });
    const a = await peer('peer-a', 8);
    const mute = await peer('peer-mute', 4, 10, { autoPong: false });
    a.send({ type: 'serve', model: MODEL });
    // Each holds half; which half goes by how their ids sort.
    const halves = [range(await a.next('assign')), range(await mute.next('assign'))].sort((x, y) => x[0]! - y[0]!);
    expect(halves).toEqual([[0, 4], [4, 8]]);
    expect(await a.next('leave', () => true, 5000)).toMatchObject({ peerId: idOf('peer-mute'), reason: 'timeout' });
    expect(range(await a.next('assign'))).toEqual([0, 8]);
  });

  it('a reconnecting peer keeps its range and hears it again', async () => {
    await start();
    const a = await peer('peer-a', 4);
    const b = await peer('peer-b', 4);
    a.send({ type: 'serve', model: MODEL });
    const first = await b.next('assign');
    ready(b, first);
    await a.next('models', (m) => m.models[0]!.ready[4] === 1);
    const again = await peer('peer-b', 4);
    expect(range(await again.next('assign'))).toEqual(range(first));
    // It is loading again until it reports.
    const models = await again.next('models');
    expect(models.models[0]!.ready).toEqual(new Array(8).fill(0));
    expect(a.all('assign')).toHaveLength(1);
  });

  it('reports ERR_INSUFFICIENT_MEMORY to the client that asked, and places the model once memory joins', async () => {
    await start();
    const a = await peer('peer-a', 3);
    const b = await peer('peer-b', 2);
    b.send({ type: 'serve', model: MODEL });
    const err = await b.next('error');
    expect(err).toMatchObject({ code: 'ERR_INSUFFICIENT_MEMORY', ref: 'serve' });
    expect(err.message).toMatch(/model tiny-llama needs 8 layers of 100 MB \(800 MB\).*hold 5: 300 MB more memory is needed/);
    expect((await a.next('models')).models[0]!.assigned).toEqual(new Array(8).fill(0));
    expect(a.all('error')).toEqual([]);
    const c = await peer('peer-c', 3);
    const ranges = [await a.next('assign'), await b.next('assign'), await c.next('assign')].map(range);
    expect(ranges.reduce((sum, [s, e]) => sum + e! - s!, 0)).toBe(8);
  });

  it('places later models on what earlier ones left of the budgets', async () => {
    await start();
    const a = await peer('peer-a', 8);
    const b = await peer('peer-b', 8);
    a.send({ type: 'serve', model: MODEL });
    expect(range(await a.next('assign'))).toEqual([0, 4]);
    a.send({ type: 'serve', model: { ...MODEL, modelId: 'second' } });
    expect(await a.next('assign', (m) => m.model.modelId === 'second')).toMatchObject({ start: 0, end: 4 });
    expect(await b.next('assign', (m) => m.model.modelId === 'second')).toMatchObject({ start: 4, end: 8 });
    a.send({ type: 'serve', model: { ...MODEL, modelId: 'third' } });
    expect((await a.next('error')).message).toMatch(/model third .* 800 MB more memory is needed/);
    const models = await b.next('models', (m) => m.models.length === 3);
    expect(models.models.map((m) => [m.model.modelId, Math.min(...m.assigned)])).toEqual([
      ['tiny-llama', 1],
      ['second', 1],
      ['third', 0],
    ]);
    // A changed spec (other weights) moves every holder to the new one.
    a.send({ type: 'serve', model: { ...MODEL, source: 'https://models.example/v2' } });
    const moved = await a.next('assign', (m) => m.model.source.endsWith('v2'));
    expect(range(moved)).toEqual([0, 4]);
    await b.next('assign', (m) => m.model.source.endsWith('v2'));
  });

  it('splices a route around one hop for a spot-check, and counts verdicts only about peers it routed the asker through', async () => {
    await start();
    const a = await peer('peer-a', 4);
    const b = await peer('peer-b', 8);
    const c = await peer('peer-c', 4);
    const asker = await peer('peer-asker', 0.5);
    a.send({ type: 'serve', model: { ...MODEL, replication: 2 } });
    for (const p of [a, b, c]) ready(p, await p.next('assign'));
    await asker.next('models', (m) => m.models[0]!.ready.every((r) => r === 2));
    const ask = async (requestId: number, extra: Record<string, unknown> = {}) => {
      asker.send({ type: 'route', requestId, modelId: MODEL.modelId, ...extra });
      return Promise.race([asker.next('route', (m) => m.requestId === requestId), asker.next('error', (m) => m.requestId === requestId)]);
    };
    const first = await ask(1);
    expect(first.type).toBe('route');
    const hops = (first as Extract<ServerMessage, { type: 'route' }>).hops;
    // Verdicts about a peer the asker was never routed through do not count; about one it was, do.
    const trust = async () => ((await (await fetch(`${fixture.server.httpUrl}/api/networks/net`)).json()) as { reputation: Record<string, { verified: number; wrong: number }> }).reputation;
    const routed = hops[0]!.peerId;
    const never = [idOf('peer-a'), idOf('peer-b'), idOf('peer-c')].find((p) => !hops.some((h) => h.peerId === p))!;
    asker.send({ type: 'verdict', modelId: MODEL.modelId, verdicts: [{ peerId: routed, result: 'verified' }, { peerId: never, result: 'wrong' }] });
    await waitFor(async () => (await trust())[routed]?.verified === 1, 2000, 'the verdict counted');
    expect((await trust())[never]).toMatchObject({ wrong: 0, excluded: false });
    // Each hop swapped in turn: the rest of the route stays, the new hops cover the same layers, signed.
    for (const [i, hop] of hops.entries()) {
      const spliced = (await ask(10 + i, { around: hops, replace: hop.peerId })) as Extract<ServerMessage, { type: 'route' }>;
      expect(spliced.type).toBe('route');
      expect(spliced.ticket).toBeDefined();
      expect(spliced.hops.map((h) => h.peerId)).not.toContain(hop.peerId);
      expect(spliced.hops.filter((h) => h.start < hop.start || h.end > hop.end)).toEqual(hops.filter((h) => h !== hop));
    }
    // Nobody else holds what b holds once b and the other holder are excluded; a made-up route is refused.
    const other = hops.find((h) => h.peerId !== idOf('peer-b'));
    if (other) expect(await ask(20, { around: hops, replace: other.peerId, exclude: [idOf('peer-a'), idOf('peer-b'), idOf('peer-c')] })).toMatchObject({ type: 'error', code: 'ERR_NO_ROUTE' });
    expect(await ask(21, { around: [{ peerId: idOf('peer-a'), start: 0, end: 8 }], replace: idOf('peer-a') })).toMatchObject({ type: 'error', code: 'ERR_INVALID_ARGUMENT' });

  });

  it('gives a new key claiming 16 TiB and 1e7 GFLOP/s a small range while established keys can hold every copy', async () => {
    await start();
    const old = [await peer('old-a', 16), await peer('old-b', 16), await peer('old-c', 16)];
    old[0]!.send({ type: 'serve', model: { ...MODEL, replication: 3 } });
    for (const p of old) ready(p, await p.next('assign'));
    // Ten clients, each routed through every old key, each find its work right: established.
    // (One client's praise of a key counts once a minute, however often it repeats it.)
    const ids = ['old-a', 'old-b', 'old-c'].map(idOf);
    for (let n = 0; n < 10; n++) {
      const asker = await peer(`trust-asker-${n}`, 0.5);
      await asker.next('models', (m) => m.models[0]!.ready.every((r) => r === 3));
      for (const [i, id] of ids.entries()) {
        asker.send({ type: 'route', requestId: i, modelId: MODEL.modelId, exclude: ids.filter((x) => x !== id) });
        await asker.next('route', (m) => m.requestId === i);
      }
      asker.send({ type: 'verdict', modelId: MODEL.modelId, verdicts: [...ids, ...ids].map((peerId) => ({ peerId, result: 'verified' as const })) });
    }
    const trust = async () => ((await (await fetch(`${fixture.server.httpUrl}/api/networks/net`)).json()) as { reputation: Record<string, { newcomer: boolean }> }).reputation;
    await waitFor(async () => { const t = await trust(); return ids.every((id) => t[id]?.newcomer === false); }, 3000, 'three established keys');
    // A newcomer claiming the most memory and speed the protocol takes gets a quarter of a new model at most.
    const fresh = await peer('new-fast', (16 * 1024 * 1024) / 100, 1e7);
    fresh.send({ type: 'serve', model: { ...MODEL, modelId: 'second', replication: 3 } });
    const assigned = await fresh.next('assign', (m) => m.model.modelId === 'second');
    expect(assigned.end - assigned.start).toBeLessThanOrEqual(2);
  });

  it('routes by the latency the asker measured and the load peers report', async () => {
    await start();
    const a = await peer('peer-a', 8);
    const b = await peer('peer-b', 8);
    const asker = await peer('peer-asker', 0.5);
    a.send({ type: 'serve', model: { ...MODEL, replication: 2 } });
    const [assignA, assignB] = [await a.next('assign'), await b.next('assign')];
    expect(range(assignA)).toEqual([0, 8]);
    expect(range(assignB)).toEqual([0, 8]);
    ready(a, assignA);
    ready(b, assignB);
    await asker.next('models', (m) => m.models[0]!.ready.every((r) => r === 2));

    const route = async (requestId: number, extra: Record<string, unknown>) => {
      asker.send({ type: 'route', requestId, modelId: MODEL.modelId, ...extra });
      return (await asker.next('route', (m) => m.requestId === requestId)).hops.map((h) => h.peerId);
    };
    expect(await route(1, { latencyMs: { [idOf('peer-a')]: 80, [idOf('peer-b')]: 4 } })).toEqual([idOf('peer-b')]);
    expect(await route(2, { latencyMs: { [idOf('peer-a')]: 3, [idOf('peer-b')]: 40.5 } })).toEqual([idOf('peer-a')]);
    // The faster one excluded: the slower replica still serves.
    expect(await route(3, { latencyMs: { [idOf('peer-a')]: 80, [idOf('peer-b')]: 4 }, exclude: [idOf('peer-b')] })).toEqual([idOf('peer-a')]);
    // Latencies are per request: the next asker's measurements are its own.
    expect(await route(4, { latencyMs: { [idOf('peer-a')]: 3, [idOf('peer-b')]: 40 } })).toEqual([idOf('peer-a')]);
    // Load counts too: a busy fast peer loses to an idle one a little slower (5 ms per session).
    b.send({ type: 'status', modelId: MODEL.modelId, start: 0, end: 8, state: 'ready', sessions: 4, tokensServed: 0 });
    await sleep(50);
    expect(await route(5, { latencyMs: { [idOf('peer-a')]: 10, [idOf('peer-b')]: 4 } })).toEqual([idOf('peer-a')]);
    expect(await route(6, { latencyMs: { [idOf('peer-a')]: 40, [idOf('peer-b')]: 4 } })).toEqual([idOf('peer-b')]);
    expect(asker.all('error')).toEqual([]);
  });

  it('refuses bad latency maps with a named error', async () => {
    await start();
    const a = await peer('peer-a', 8);
    const raw = (m: unknown) => a.send(JSON.stringify(m));
    const tooMany = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`peer-${i}`, 1]));
    const bad: unknown[] = [{ [idOf('peer-a')]: -1 }, { [idOf('peer-a')]: 60_001 }, { [idOf('peer-a')]: '5' }, { [idOf('peer-a')]: null }, { 'x': 1 }, tooMany, [5]];
    for (const latencyMs of bad) {
      raw({ type: 'route', requestId: 1, modelId: MODEL.modelId, latencyMs });
      const err = await a.next('error');
      expect(err, JSON.stringify(latencyMs)).toMatchObject({ code: 'ERR_INVALID_MESSAGE', ref: 'route', requestId: 1 });
      expect(err.message).toMatch(/latencyMs/);
    }
    // At the bounds it is accepted (and answered on its merits: nothing is served yet).
    const sixtyFour = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`peer-${i}`, i === 0 ? 60_000 : 0]));
    raw({ type: 'route', requestId: 2, modelId: MODEL.modelId, latencyMs: sixtyFour });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_NO_ROUTE', ref: 'route', requestId: 2 });
  });

  it('answers malformed and out-of-place serving messages with named errors and stays up', async () => {
    await start();
    const a = await peer('peer-a', 8);
    const raw = (m: unknown) => a.send(JSON.stringify(m));
    raw({ type: 'serve', model: { ...MODEL, numLayers: -1 } });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_INVALID_MESSAGE', ref: 'serve' });
    raw({ type: 'serve' });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_INVALID_MESSAGE', ref: 'serve' });
    raw({ type: 'status', modelId: 'x', start: 0, end: 1, state: 'dancing', sessions: 0, tokensServed: 0 });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_INVALID_MESSAGE', ref: 'status' });
    raw({ type: 'route', requestId: -1, modelId: 'x' });
    const unnamed = await a.next('error');
    expect(unnamed).toMatchObject({ code: 'ERR_INVALID_MESSAGE', ref: 'route' });
    expect(unnamed).not.toHaveProperty('requestId'); // -1 is no request id
    raw({ type: 'route', requestId: 1, modelId: 'nope' });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_NO_ROUTE', ref: 'route', requestId: 1 });

    a.send({ type: 'serve', model: MODEL });
    const assign = await a.next('assign');
    a.send({ type: 'status', modelId: MODEL.modelId, start: 0, end: 3, state: 'ready', sessions: 0, tokensServed: 0 });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', ref: 'status' });
    a.send({ type: 'status', modelId: 'other', start: 0, end: 8, state: 'ready', sessions: 0, tokensServed: 0 });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', ref: 'status' });
    a.send({ type: 'route', requestId: 2, modelId: MODEL.modelId, start: 6, end: 9 });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', ref: 'route', requestId: 2 });

    const stranger = fixture.track(await TestClient.open(fixture.server.wsUrl));
    stranger.send({ type: 'serve', model: MODEL });
    expect(await stranger.next('error')).toMatchObject({ code: 'ERR_NOT_JOINED', ref: 'serve' });

    ready(a, assign);
    a.send({ type: 'route', requestId: 3, modelId: MODEL.modelId });
    expect((await a.next('route')).hops).toEqual([{ peerId: idOf('peer-a'), start: 0, end: 8 }]);
    await sleep(50);
    expect(a.all('error')).toHaveLength(8);
  });
});
