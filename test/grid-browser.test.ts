// A model served by browsers: tiny-llama split over two Chromium pages (the web app's
// window.aigridApp.contribute, weights read over HTTP Range from another origin) and one Node peer;
// a Node client (RemoteChain + Head on the CPU, explicit route) gets exactly the golden greedy tokens,
// also with eight generations at once over the pages, and when a page closes mid-generation the
// client fails over to a third page holding the same layers without a change in the tokens.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridPeer, RemoteChain, explicitRoutes, type FailoverEvent } from '../client/grid/index.ts';
import { generate, withHead, type LayerChain } from '../client/model/generate.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import { Head } from '../client/model/head.ts';
import { readConfig } from '../client/model/shard.ts';
import { Mesh } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import type { Hop, ModelSpec } from '../protocol/index.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { launchChromium, openPage, type TestBrowser } from './helpers/chromium.ts';
import { CAPABILITIES, route } from './helpers/grid-net.ts';
import { openFixture } from './helpers/model-runtime.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { waitFor } from './helpers/wait.ts';
import { FIXTURE_DIR, GOLDEN_STEPS, fixtures, type FixtureModel } from './fixtures/index.ts';
import { testIdentity } from './helpers/identities.ts';

const APP_DIR = fileURLToPath(new URL('../dist/app', import.meta.url));
const NETWORK = 'browser-grid';
const MODEL = 'tiny-llama';
/** The pages' backend: WebGPU on SwiftShader. */
const PAGE_BACKEND: 'webgpu' | 'cpu' = 'webgpu';

let server: SignalingServer;
let files: RangeServer;
let chromium: TestBrowser;
const pages: { page: Page; errors: string[]; peerId: string }[] = [];
const meshes: Mesh[] = [];
const closers: { close(): void }[] = [];
let head: Head | undefined;
/** What the first test set up and the later ones reuse: the Node hop, the client and its route. */
let served: { nodePeer: GridPeer; client: Mesh; hops: Hop[]; spec: ModelSpec; chain: RemoteChain; model: FixtureModel } | undefined;

async function nodeMesh(peerId: string): Promise<Mesh> {
  const mesh = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network: NETWORK, capabilities: CAPABILITIES, autoConnect: false, maxConnections: 16, identity: testIdentity(peerId) });
  meshes.push(mesh);
  await mesh.start();
  return mesh;
}

async function modelSpec(): Promise<ModelSpec> {
  const config = readConfig(await openFixture(MODEL));
  return {
    modelId: MODEL,
    source: `${files.url}/${MODEL}`,
    numLayers: config.numLayers,
    hiddenSize: config.hiddenSize,
    layerBytes: 1024 * 1024,
    weightDtype: 'f32',
    replication: 1,
  };
}

beforeAll(async () => {
  await fixtures();
  server = await startSignalingServer({ staticDir: APP_DIR, heartbeatMs: 1000 });
  files = await startRangeServer(FIXTURE_DIR);
  chromium = await launchChromium();
  for (let i = 0; i < 2; i++) {
    const { page, errors } = await openPage(chromium.browser, `${server.httpUrl}/`);
    const peerId = await page.evaluate(async (network) => (await window.aigridApp.join({ network, autoConnect: false })).peerId, NETWORK);
    pages.push({ page, errors, peerId });
  }
});

afterAll(async () => {
  for (const c of closers.splice(0)) c.close();
  for (const m of meshes.splice(0)) m.close();
  head?.destroy();
  await chromium?.close();
  await files?.close();
  await server?.close();
});

describe('serving from Chromium pages', () => {
  it('tiny-llama over two pages (WebGPU) and a Node peer gives the golden tokens', async () => {
    const spec = await modelSpec();
    // Layers: page A [0, 1), the Node peer [1, 3), page B [3, 4).
    const [a, b] = pages as [(typeof pages)[number], (typeof pages)[number]];
    const nodePeer = new GridPeer({ mesh: await nodeMesh('grid-node'), backend: 'cpu', open: checkpointOpener(openCheckpointNode, { cache: false }) });
    closers.push(nodePeer);
    const contribute = (page: Page, start: number, end: number) =>
      page.evaluate((model, start, end, backend) => window.aigridApp.contribute({ model, start, end, backend, cache: false }), spec, start, end, PAGE_BACKEND);
    const statuses = await Promise.all([contribute(a.page, 0, 1), nodePeer.assign(spec, 1, 3), contribute(b.page, 3, 4)]);
    expect(statuses[0]).toMatchObject({ modelId: MODEL, start: 0, end: 1, state: 'ready' });
    expect(statuses[2]).toMatchObject({ modelId: MODEL, start: 3, end: 4, state: 'ready' });

    // Every peer read its layers with Range requests (the pages from another origin than their own),
    // and only those: the embedding and LM head, which no peer serves, were never downloaded.
    expect(new URL(files.url).origin).not.toBe(new URL(server.httpUrl).origin);
    const weights = files.requests.filter((r) => r.file === `${MODEL}/model.safetensors`);
    expect(weights.length).toBeGreaterThan(0);
    expect(weights.every((r) => r.method === 'HEAD' || (r.range !== undefined && r.status === 206))).toBe(true);
    expect(files.requests.filter((r) => r.status === 404).map((r) => r.file)).toEqual(Array(3).fill(`${MODEL}/model.safetensors.index.json`));
    const fileSize = (await stat(join(FIXTURE_DIR, MODEL, 'model.safetensors'))).size;
    expect(files.sent('model.safetensors')).toBeLessThan(fileSize);
    // Each page serves its range (on WebGPU: contribute refuses 'webgpu' without an adapter).
    expect(await Promise.all(pages.map(({ page }) => page.evaluate(() => window.aigridApp.grid?.status().map((s) => [s.start, s.end, s.state]))))).toEqual([
      [[0, 1, 'ready']],
      [[3, 4, 'ready']],
    ]);

    const client = await nodeMesh('grid-client');
    const hops = route([a.peerId, 0, 1], [nodePeer, 1, 3], [b.peerId, 3, 4]);
    await waitFor(() => hops.every((h) => client.peers().some((p) => p.peerId === h.peerId)), 5000, 'hops in the directory');
    const failovers: FailoverEvent[] = [];
    const chain = new RemoteChain({
      mesh: client,
      modelId: MODEL,
      numLayers: spec.numLayers,
      hiddenSize: spec.hiddenSize,
      routes: explicitRoutes([hops]),
      onFailover: (e) => failovers.push(e),
    });
    closers.push(chain);
    head = await Head.load(await openFixture(MODEL), { backend: 'cpu' });
    served = { nodePeer, client, hops, spec, chain, model: (await fixtures()).models.find((m) => m.name === MODEL)! };

    const model = (await fixtures()).models.find((m) => m.name === MODEL)!;
    for (const golden of model.golden.slice(0, 2)) {
      const result = await chain.generate(head, golden.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 });
      expect(result.tokens, golden.prompt).toEqual(golden.greedy);
    }
    expect(failovers).toEqual([]);
    await waitFor(() => nodePeer.sessionCount === 0, 5000, 'sessions released on the Node hop');
    // The only console errors are the loader's probes for a sharded index (404: the model is one file).
    for (const { errors } of pages) expect(errors.filter((e) => !/Failed to load resource: .* 404/.test(e))).toEqual([]);
  });

  it('eight generations at once over the pages all give their golden tokens', async () => {
    const { nodePeer, chain, model } = served!;
    const jobs = [...model.golden, ...model.golden];
    const results = await Promise.all(jobs.map((g) => chain.generate(head!, g.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 })));
    expect(results).toHaveLength(8);
    for (const [i, r] of results.entries()) expect(r.tokens, jobs[i]!.prompt).toEqual(jobs[i]!.greedy);
    // Decode steps of sessions waiting at a hop ran together, on the pages as on the Node peer.
    const stats = [nodePeer.batchStats, ...(await Promise.all(pages.map(({ page }) => page.evaluate(() => window.aigridApp.grid!.batchStats))))];
    for (const s of stats) expect(s.largest).toBeGreaterThan(1);
    await waitFor(() => nodePeer.sessionCount === 0, 5000, 'sessions released on the Node hop');
    // Releases reach the pages over their links a moment later.
    const pageSessions = () => Promise.all(pages.map(({ page }) => page.evaluate(() => window.aigridApp.grid!.sessionCount)));
    await waitFor(async () => (await pageSessions()).every((n) => n === 0), 5000, 'sessions released on the pages');
  });

  it('a page closed mid-generation is replaced by a page serving the same layers; tokens do not change', async () => {
    const { nodePeer, client, hops, spec, model } = served!;
    const [a, b] = pages as [(typeof pages)[number], (typeof pages)[number]];
    // Page C holds the same layers [3, 4) as page B.
    const c = await openPage(chromium.browser, `${server.httpUrl}/`);
    const cId = await c.page.evaluate(async (network) => (await window.aigridApp.join({ network, autoConnect: false })).peerId, NETWORK);
    const status = await c.page.evaluate((model, backend) => window.aigridApp.contribute({ model, start: 3, end: 4, backend, cache: false }), spec, PAGE_BACKEND);
    expect(status).toMatchObject({ start: 3, end: 4, state: 'ready' });
    const replica = route([a.peerId, 0, 1], [nodePeer, 1, 3], [cId, 3, 4]);
    await waitFor(() => client.peers().some((p) => p.peerId === cId), 5000, 'page C in the directory');
    const failovers: FailoverEvent[] = [];
    const chain = new RemoteChain({
      mesh: client,
      modelId: MODEL,
      numLayers: spec.numLayers,
      hiddenSize: spec.hiddenSize,
      routes: explicitRoutes([hops, replica]),
      onFailover: (e) => failovers.push(e),
    });
    closers.push(chain);

    const golden = model.golden[3]!;
    const killAt = golden.ids.length + 8;
    let closed = false;
    // Page B closes after eight decode steps, before the next one is sent.
    const layers: LayerChain = async (hidden, positions, sessionId) => {
      if (!closed && positions[0] === killAt) {
        closed = true;
        await b.page.close();
      }
      return chain.layers(hidden, positions, sessionId);
    };
    const result = await generate(withHead(head!, layers), golden.ids, { maxTokens: GOLDEN_STEPS, temperature: 0, sessionId: 'page-closed' });
    chain.release('page-closed');
    expect(closed).toBe(true);
    expect(result.tokens).toEqual(golden.greedy);
    expect(failovers).toHaveLength(1);
    expect(failovers[0]).toMatchObject({ blame: b.peerId, replayTokens: killAt + 1 });
    expect(chain.badPeers()).toEqual([b.peerId]);
    // The old session was released on the surviving hops, the new one at the end.
    await waitFor(() => nodePeer.sessionCount === 0, 5000, 'sessions released on the Node hop');
    expect(await Promise.all([a.page, c.page].map((page) => page.evaluate(() => window.aigridApp.grid!.sessionCount)))).toEqual([0, 0]);
    expect(c.errors.filter((e) => !/Failed to load resource: .* 404/.test(e))).toEqual([]);
  });
});
