// The Network page's live map against a real signaling server: raw WebSocket peers (a CPU Node
// peer, a GPU Node peer and a GPU browser peer serving a model's layers, two clients) report ready
// with their pass times, the clients take routes, and the server's routes view
// (/api/networks/:name/routes) has them with each hop's latency and the links they use; the app in
// real Chromium draws one node per peer with its kind and backend, the route's edges, its path with
// a moving dot whose hops last as their latencies say, the latencies on the edges, and peers that
// join later. Also the bounds of what the server remembers and of what the page draws.
// AIGRID_SCREENSHOT_DIR=docs keeps the map's picture as docs/network-map.png (the README's).
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'puppeteer-core';
import { choosePeers, hopSeconds, MAX_PEERS_DRAWN, type MapPeer } from '../client/app/pages/network-map-draw.ts';
import type { Capabilities, ClientMessage, Hop, LoadReport, ModelSpec, PeerServing, ServerMessage } from '../protocol/index.ts';
import { MAX_RECENT_ROUTE_HOPS, MAX_RECENT_ROUTES, RECENT_ROUTE_MS, RoutesViewSchema, type RoutesView } from '../protocol/routes-view.ts';
import { MAX_ROUTE_NETWORKS, RecentRoutes, routesView } from '../signaling/recent-routes.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { launchChromium, openPage, type TestBrowser } from './helpers/chromium.ts';
import { idOf } from './helpers/identities.ts';
import { expectVisibleIn, newDecoder, screenshot } from './helpers/page-shots.ts';
import { waitFor } from './helpers/wait.ts';
import { CAPS, TestClient } from './helpers/ws-client.ts';

const APP_DIR = fileURLToPath(new URL('../dist/app', import.meta.url));
const NETWORK = 'map';
const MODEL: ModelSpec = {
  modelId: 'llama-map',
  source: 'https://models.example/llama-map',
  numLayers: 8,
  hiddenSize: 64,
  layerBytes: 100 * 1024 * 1024,
  weightDtype: 'f16',
  replication: 1,
};
const gpu = (vendor: string, architecture: string) => ({ vendor, architecture, device: '', description: '', features: [], limits: {} });
/** Serving peers: room for 3 + 3 + 2 layers, so together they hold the model's 8 once. */
const SERVERS: { name: string; layers: number; caps: Partial<Capabilities>; latencyMs: number }[] = [
  { name: 'map-node-cpu', layers: 3, caps: { kind: 'node' }, latencyMs: 40 },
  { name: 'map-node-gpu', layers: 3, caps: { kind: 'node', gpu: gpu('nvidia', 'ampere'), throughput: { gflops: 900, backend: 'webgpu' } }, latencyMs: 12.5 },
  { name: 'map-browser-gpu', layers: 2, caps: { kind: 'browser', gpu: gpu('apple', 'metal-3'), throughput: { gflops: 300, backend: 'webgpu' } }, latencyMs: 65 },
];
const CLIENTS: { name: string; caps: Partial<Capabilities> }[] = [
  { name: 'map-client-page', caps: { kind: 'browser' } },
  { name: 'map-client-node', caps: { kind: 'node' } },
];

type Assign = Extract<ServerMessage, { type: 'assign' }>;
type Status = Extract<ClientMessage, { type: 'status' }>;

let server: SignalingServer;
let chromium: TestBrowser;
let decoder: Page;
let shots: string;
const sockets: TestClient[] = [];
/** Each serving peer's assignment. */
const assigned = new Map<string, Assign>();
/** The hops each client was given. */
const routes = new Map<string, Hop[]>();

async function joinAs(name: string, layers: number, caps: Partial<Capabilities>): Promise<TestClient> {
  const client = await TestClient.open(server.wsUrl);
  sockets.push(client);
  await client.hello(name, NETWORK, { ...CAPS, memoryBudgetMB: layers * 100, ...caps });
  await client.next('welcome');
  return client;
}

/** Sends a status and waits until the server took it (a ping after it is answered: one queue per socket). */
async function report(peer: TestClient, a: Assign, load: LoadReport): Promise<void> {
  const status: Status = { type: 'status', modelId: a.model.modelId, start: a.start, end: a.end, state: 'ready', sessions: 1, tokensServed: 100, load };
  peer.send(status);
  peer.send({ type: 'ping', id: 7 });
  await peer.next('pong', (p) => p.id === 7);
}

async function routesOf(network: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${server.httpUrl}/api/networks/${encodeURIComponent(network)}/routes`);
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  if (!existsSync(join(APP_DIR, 'index.html'))) throw new Error(`the web app is not built (${APP_DIR}): run npx vite build`);
  server = await startSignalingServer({ staticDir: APP_DIR, heartbeatMs: 60_000 });
  const peers = await Promise.all(SERVERS.map((s) => joinAs(s.name, s.layers, s.caps)));
  const clients = await Promise.all(CLIENTS.map((c) => joinAs(c.name, 0, c.caps)));
  peers[0]!.send({ type: 'serve', model: MODEL });
  for (const [i, peer] of peers.entries()) assigned.set(SERVERS[i]!.name, await peer.next('assign'));
  for (const [i, peer] of peers.entries()) await report(peer, assigned.get(SERVERS[i]!.name)!, { tokensPerSecond: 20, utilisation: 0.3, hopLatencyMs: SERVERS[i]!.latencyMs });
  for (const [i, client] of clients.entries()) {
    client.send({ type: 'route', requestId: i + 1, modelId: MODEL.modelId });
    routes.set(CLIENTS[i]!.name, (await client.next('route')).hops);
  }
  chromium = await launchChromium();
  decoder = await newDecoder(chromium.browser);
  shots = mkdtempSync(join(tmpdir(), 'aigrid-map-shots-'));
});

afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()));
  await chromium?.close();
  await server?.close();
  if (shots) rmSync(shots, { recursive: true, force: true });
});

describe('the routes view', () => {
  it('has the routes handed out, most recent first, each hop with the latency its peer reported, and their links', async () => {
    const latency = new Map(SERVERS.map((s) => [idOf(s.name), s.latencyMs]));
    const { status, body } = await routesOf(NETWORK);
    expect(status).toBe(200);
    const view = RoutesViewSchema.parse(body);
    expect(view.network).toBe(NETWORK);
    expect(view.routes.map((r) => r.client)).toEqual([idOf('map-client-node'), idOf('map-client-page')]);
    for (const route of view.routes) {
      const given = routes.get(CLIENTS.find((c) => idOf(c.name) === route.client)!.name)!;
      expect(route.modelId).toBe(MODEL.modelId);
      expect(route.hops).toEqual(given.map((h) => ({ ...h, latencyMs: latency.get(h.peerId) })));
      expect(Date.now() - route.at).toBeLessThan(RECENT_ROUTE_MS);
    }
    // The model needs all three serving peers; both clients were given the same chain.
    const chain = routes.get('map-client-page')!.map((h) => h.peerId);
    expect(new Set(chain)).toEqual(new Set(SERVERS.map((s) => idOf(s.name))));
    const expected = new Map<string, number>();
    for (const client of CLIENTS.map((c) => idOf(c.name))) {
      const path = [client, ...chain, client];
      for (let i = 1; i < path.length; i++) expected.set(`${path[i - 1]} ${path[i]}`, (expected.get(`${path[i - 1]} ${path[i]}`) ?? 0) + 1);
    }
    expect(new Map(view.links.map((l) => [`${l.from} ${l.to}`, l.routes]))).toEqual(expected);
    // Nothing but ids, layer ranges, times and latencies: no ticket or key.
    expect(JSON.stringify(body)).not.toMatch(/ticket|signature|publicKey/);
    // The serving view carries each peer's last load too.
    const network = (await (await fetch(`${server.httpUrl}/api/networks/${NETWORK}`)).json()) as { serving: PeerServing[] };
    expect(network.serving.find((s) => s.peerId === idOf('map-node-cpu'))?.load?.hopLatencyMs).toBe(40);
  });

  it('answers 404 for a network without peers, and for a name that is not one', async () => {
    expect((await routesOf('no-such-network')).status).toBe(404);
    expect((await routesOf('bad name!')).status).toBe(404);
    expect((await routesOf('x'.repeat(65))).status).toBe(404);
  });
});

describe('what the server remembers of routes', () => {
  const hops = (n: number): Hop[] => Array.from({ length: n }, (_, i) => ({ peerId: `peer-${i}`, start: i, end: i + 1 }));

  it(`keeps the last ${MAX_RECENT_ROUTES} routes of the last ${RECENT_ROUTE_MS / 1000} s per network, at most ${MAX_RECENT_ROUTE_HOPS} hops each`, () => {
    let now = 1_000_000;
    const recent = new RecentRoutes(() => now);
    for (let i = 0; i < MAX_RECENT_ROUTES + 6; i++) {
      recent.add('n', 'm', `client-${i}`, hops(2));
      now += 10;
    }
    const listed = recent.list('n');
    expect(listed).toHaveLength(MAX_RECENT_ROUTES);
    expect(listed[0]!.client).toBe(`client-${MAX_RECENT_ROUTES + 5}`);
    expect(listed.at(-1)!.client).toBe('client-6');
    // A listed route is a copy: changing it changes nothing kept.
    listed[0]!.hops[0]!.peerId = 'changed';
    expect(recent.list('n')[0]!.hops[0]!.peerId).toBe('peer-0');
    now += 1000;
    recent.add('n', 'm', 'long', hops(MAX_RECENT_ROUTE_HOPS + 10));
    const long = recent.list('n')[0]!;
    expect(long.hops).toHaveLength(MAX_RECENT_ROUTE_HOPS);
    expect(long.hopsLeftOut).toBe(10);
    expect(RoutesViewSchema.safeParse(routesView('n', recent.list('n'), [])).success).toBe(true);
    now += RECENT_ROUTE_MS - 100;
    expect(recent.list('n').map((r) => r.client)).toEqual(['long']);
    now += 200;
    expect(recent.list('n')).toEqual([]);
  });

  it(`remembers at most ${MAX_ROUTE_NETWORKS} networks, forgetting the one whose last route is oldest`, () => {
    let now = 0;
    const recent = new RecentRoutes(() => now);
    for (let i = 0; i <= MAX_ROUTE_NETWORKS; i++) {
      now++;
      recent.add(`net-${i}`, 'm', 'c', hops(1));
      if (i === 10) recent.add('net-0', 'm', 'c', hops(1)); // net-0 is recent again
    }
    expect(recent.list('net-0')).toHaveLength(2);
    expect(recent.list('net-1')).toEqual([]);
    expect(recent.list(`net-${MAX_ROUTE_NETWORKS}`)).toHaveLength(1);
    recent.forget('net-0');
    expect(recent.list('net-0')).toEqual([]);
  });

  it("joins each hop with its peer's reported latency for that model only, and counts links", () => {
    const serving: PeerServing[] = [
      { peerId: 'peer-0', modelId: 'm', start: 0, end: 1, state: 'ready', sessions: 0, tokensServed: 0, reportedAt: 1, load: { tokensPerSecond: 1, utilisation: 0, hopLatencyMs: 7 } },
      { peerId: 'peer-1', modelId: 'other', start: 0, end: 1, state: 'ready', sessions: 0, tokensServed: 0, reportedAt: 1, load: { tokensPerSecond: 1, utilisation: 0, hopLatencyMs: 9 } },
    ];
    const view: RoutesView = routesView('n', [
      { at: 2, modelId: 'm', client: 'client', hops: hops(2) },
      { at: 1, modelId: 'm', client: 'client', hops: hops(2) },
    ], serving);
    expect(view.routes[0]!.hops).toEqual([{ peerId: 'peer-0', start: 0, end: 1, latencyMs: 7 }, { peerId: 'peer-1', start: 1, end: 2 }]);
    expect(view.links).toEqual([
      { from: 'client', to: 'peer-0', routes: 2 },
      { from: 'peer-0', to: 'peer-1', routes: 2 },
      { from: 'peer-1', to: 'client', routes: 2 },
    ]);
  });
});

describe('what the page draws at most', () => {
  const peer = (i: number, extra: Partial<MapPeer> = {}): MapPeer => ({ peerId: `p-${String(i).padStart(4, '0')}`, kind: 'node', backend: 'cpu', gpu: null, standing: 'newcomer', verified: 0, wrong: 0, serving: '', self: false, ...extra });

  it(`${MAX_PEERS_DRAWN} peers: this tab and the peers on routes first, then serving peers, the rest counted`, () => {
    const peers = Array.from({ length: MAX_PEERS_DRAWN + 50 }, (_, i) => peer(i, i >= 240 ? { firstLayer: 0 } : {}));
    peers.push(peer(9999, { self: true }));
    const route = { at: 1, modelId: 'm', client: 'p-0230', hops: [{ peerId: 'p-0231', start: 0, end: 2 }] };
    const { drawn, leftOut } = choosePeers({ peers, routes: [route], links: [] });
    expect(drawn).toHaveLength(MAX_PEERS_DRAWN);
    expect(leftOut).toBe(51);
    expect(drawn.slice(0, 3).map((p) => p.peerId)).toEqual(['p-9999', 'p-0230', 'p-0231']);
    expect(drawn.slice(3, 13).every((p) => p.firstLayer === 0)).toBe(true);
  });
});

describe('the Network page map', () => {
  it('draws every peer with its kind, the routes with their edges, moving dots and latencies, and follows joins', async () => {
    const { page, errors } = await openPage(chromium.browser, `${server.httpUrl}/?network=${NETWORK}#network`);
    await page.bringToFront();
    await page.setViewport({ width: 1100, height: 900 });
    await page.waitForFunction(() => document.getElementById('state')?.textContent === 'open', { timeout: 15_000, polling: 100 });
    const self = await page.$eval('#peer-id', (e) => e.textContent ?? '');
    const expected = new Map<string, { kind: string; backend: string; gpu: string }>([
      ...SERVERS.map((s) => [idOf(s.name), { kind: s.caps.kind!, backend: s.caps.throughput?.backend ?? 'cpu', gpu: s.caps.gpu ? 'yes' : 'no' }] as const),
      ...CLIENTS.map((c) => [idOf(c.name), { kind: c.caps.kind!, backend: 'cpu', gpu: 'no' }] as const),
    ]);
    const nodes = async () =>
      page.$$eval('#map-svg g.map-peer', (gs) => gs.map((g) => ({ ...(g as SVGGElement).dataset })) as Record<string, string>[]);
    // The tab itself is a peer too (a browser client without memory).
    await waitFor(async () => (await nodes()).length === expected.size + 1, 10_000, 'one node per peer');
    const drawn = await nodes();
    expect(new Set(drawn.map((n) => n.peerId))).toEqual(new Set([...expected.keys(), self]));
    for (const node of drawn) {
      if (node.peerId === self) {
        expect(node).toMatchObject({ kind: 'browser' });
        continue;
      }
      const want = expected.get(node.peerId!)!;
      expect({ id: node.peerId, kind: node.kind, backend: node.backend, gpu: node.gpu }).toEqual({ id: node.peerId, ...want });
      // No verdicts yet: every key is a newcomer.
      expect(node.standing).toBe('newcomer');
    }
    expect(await page.$eval(`g.map-peer[data-peer-id="${self}"]`, (g) => g.classList.contains('self'))).toBe(true);

    // The route's edges: client -> each hop in turn -> back to the client.
    const chain = routes.get('map-client-page')!.map((h) => h.peerId);
    const client = idOf('map-client-page');
    const path = [client, ...chain, client];
    for (let i = 1; i < path.length; i++) {
      expect(await page.$(`path.map-link[data-from="${path[i - 1]}"][data-to="${path[i]}"]`), `edge ${path[i - 1]} -> ${path[i]}`).not.toBeNull();
    }
    const hopLinkRoutes = await page.$eval(`path.map-link[data-from="${chain[0]}"][data-to="${chain[1]}"]`, (p) => (p as SVGPathElement).dataset.routes);
    expect(hopLinkRoutes).toBe('2');

    // Its path with a dot animated along it: each hop lasts as its latency says (20x slowed), then back.
    const routeSel = `path.map-route[data-client="${client}"]`;
    expect(await page.$eval(routeSel, (p) => (p as SVGPathElement).dataset.hops)).toBe(chain.join(' '));
    const latency = new Map(SERVERS.map((s) => [idOf(s.name), s.latencyMs]));
    const seconds = [...chain.map((id) => hopSeconds(latency.get(id))), 0.4];
    const animation = await page.$eval(routeSel, (p) => {
      const motion = document.querySelector(`circle.map-packet[data-route="${p.id}"] animateMotion`)!;
      return { dur: motion.getAttribute('dur'), keyTimes: motion.getAttribute('keyTimes'), href: motion.querySelector('mpath')!.getAttribute('href'), id: p.id };
    });
    const total = seconds.reduce((a, b) => a + b, 0);
    expect(animation.dur).toBe(`${total.toFixed(2)}s`);
    expect(animation.href).toBe(`#${animation.id}`);
    let elapsed = 0;
    const times = animation.keyTimes!.split(';').map(Number);
    expect(times[0]).toBe(0);
    for (const [i, s] of seconds.entries()) {
      elapsed += s;
      expect(times[i + 1]).toBeCloseTo(elapsed / total, 3);
    }
    // The dot moves.
    const where = () => page.$eval(`circle.map-packet[data-route="${animation.id}"]`, (c) => {
      const box = c.getBoundingClientRect();
      return [Math.round(box.x), Math.round(box.y)];
    });
    await page.bringToFront();
    const seen = new Set<string>();
    await waitFor(async () => seen.add(String(await where())).size >= 3, 5000, 'the dot at three places');

    // Each hop's latency written on the edge into it.
    for (const id of chain) {
      const label = await page.$eval(`text.map-latency[data-peer-id="${id}"]`, (t) => [t.textContent, (t as SVGTextElement).dataset.ms]);
      const ms = latency.get(id)!;
      expect(label).toEqual([Number.isInteger(ms) ? `${ms} ms` : `${ms.toFixed(1)} ms`, String(ms)]);
    }
    expect(await page.$$eval('#map-routes li', (lis) => lis.map((li) => li.textContent))).toHaveLength(2);
    expect(await page.$eval('#map-note', (p) => p.textContent)).toBe(`${expected.size + 1} peers drawn · 2 routes of the last minute`);

    // The tables and plots are still there beside it.
    expect(await page.$$('#peers tbody tr')).toHaveLength(expected.size);

    const shot = await screenshot(page, shots, 'network-map');
    await expectVisibleIn(page, shot, ['#map-svg', '#peers', '#charts'], decoder);
    const dir = process.env.AIGRID_SCREENSHOT_DIR;
    if (dir) {
      mkdirSync(dir, { recursive: true });
      await (await page.$('#network-map'))!.screenshot({ path: join(dir, 'network-map.png') });
    }

    // A peer that joins shows up at the next refresh.
    const late = await joinAs('map-late-extension', 0, { kind: 'extension' });
    await page.waitForSelector(`g.map-peer[data-peer-id="${idOf('map-late-extension')}"][data-kind="extension"]`, { timeout: 10_000 });
    await late.close();
    await page.waitForFunction((id) => !document.querySelector(`g.map-peer[data-peer-id="${id}"]`), { timeout: 10_000, polling: 200 }, idOf('map-late-extension'));
    expect(errors).toEqual([]);
    await page.close();
  });
});
