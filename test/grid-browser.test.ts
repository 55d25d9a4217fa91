// A model served by browsers: tiny-llama split over two Chromium pages (the web app's
// window.aigrid.contribute, weights read over HTTP Range from another origin) and one Node peer;
// a Node client (RemoteChain + Head on the CPU, explicit route) gets exactly the golden greedy tokens.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridPeer, RemoteChain, explicitRoutes, type FailoverEvent } from '../client/grid/index.ts';
import { nodeModelOpener } from '../client/grid/node.ts';
import { Head } from '../client/model/head.ts';
import { readConfig } from '../client/model/shard.ts';
import { Mesh } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import type { ModelSpec } from '../client/protocol/index.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { launchChromium, openPage, type TestBrowser } from './helpers/chromium.ts';
import { CAPABILITIES, route } from './helpers/grid-net.ts';
import { openFixture } from './helpers/model-runtime.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { waitFor } from './helpers/wait.ts';
import { FIXTURE_DIR, GOLDEN_STEPS, fixtures } from './fixtures/index.ts';

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

async function nodeMesh(peerId: string): Promise<Mesh> {
  const mesh = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network: NETWORK, capabilities: CAPABILITIES, autoConnect: false, maxConnections: 16, peerId });
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
    layerBytes: 1,
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
    const peerId = await page.evaluate(async (network) => (await window.aigrid.join({ network, autoConnect: false })).peerId, NETWORK);
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
    const nodePeer = new GridPeer({ mesh: await nodeMesh('grid-node'), backend: 'cpu', open: nodeModelOpener({ cache: false }) });
    closers.push(nodePeer);
    const contribute = (page: Page, start: number, end: number) =>
      page.evaluate((model, start, end, backend) => window.aigrid.contribute({ model, start, end, backend, cache: false }), spec, start, end, PAGE_BACKEND);
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
    expect(await Promise.all(pages.map(({ page }) => page.evaluate(() => window.aigrid.grid?.status().map((s) => [s.start, s.end, s.state]))))).toEqual([
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
});
