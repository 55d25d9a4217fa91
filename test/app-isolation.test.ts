// Cross-origin isolation of the web app in real Chromium. The signaling server sends COOP/COEP (and
// CORS/CORP for other origins) with every file of the app, so the app's page is crossOriginIsolated
// and its CPU backend runs the WebAssembly SIMD kernels; the same files served without the headers
// (/plain/, a mount of this test) give a page on the blocked-JS fallback. The isolated page serves
// tiny-llama on that backend, its weights read over CORS Range requests from another origin, and a
// Node client over WebRTC gets the golden greedy tokens. Pages of other origins still import
// /sdk.js and connect; whether they are isolated is up to their own headers.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemoteChain, explicitRoutes } from '../client/grid/index.ts';
import { Head } from '../client/model/head.ts';
import { readConfig } from '../client/model/shard.ts';
import { Mesh } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import { connect } from '../client/sdk/node.ts';
import type { ModelSpec } from '../protocol/index.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { launchChromium, openPage, type TestBrowser } from './helpers/chromium.ts';
import { CAPABILITIES, route } from './helpers/grid-net.ts';
import { testIdentity } from './helpers/identities.ts';
import { openFixture } from './helpers/model-runtime.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { waitFor } from './helpers/wait.ts';
import { FIXTURE_DIR, GOLDEN_STEPS, fixtures } from './fixtures/index.ts';

const APP_DIR = fileURLToPath(new URL('../dist/app', import.meta.url));
const NETWORK = 'app-isolation';
const MODEL = 'tiny-llama';
const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.wasm': 'application/wasm', '.mjs': 'text/javascript' };

let server: SignalingServer;
let files: RangeServer;
let site: { url: string; server: Server };
let chromium: TestBrowser;
let spec: ModelSpec;
const closers: { close(): void }[] = [];

/** The app's files as they are, without any of the server's headers: a page that is not isolated. */
function plainFiles(url = ''): { type: string; body: Buffer } | null {
  const path = url.split('?')[0]!;
  if (!path.startsWith('/plain/')) return null;
  const file = resolve(APP_DIR, `.${path.slice('/plain'.length)}`.replace(/\/$/, '/index.html'));
  if (!file.startsWith(APP_DIR + sep) || !statSync(file, { throwIfNoEntry: false })?.isFile()) return { type: 'text/plain', body: Buffer.from('') };
  return { type: TYPES[extname(file)] ?? 'application/octet-stream', body: readFileSync(file) };
}

/**
 * A page on another origin that imports the grid server's /sdk.js, connects and lists the models;
 * `?coep=` picks its own COEP header (with COOP same-origin), none when absent.
 */
const SITE_PAGE = `<!doctype html><meta charset="utf-8"><title>elsewhere</title>
<script type="module">
  const params = new URLSearchParams(location.search);
  try {
    const { connect } = await import(params.get('sdk'));
    const grid = await connect({ signal: params.get('signal'), network: params.get('network') });
    const { data } = await grid.models.list();
    grid.close();
    window.outcome = { crossOriginIsolated, sharedMemory: typeof SharedArrayBuffer === 'function', models: data.map((m) => m.id) };
  } catch (err) {
    window.outcome = { error: String(err) };
  }
</script>`;

async function startSite(): Promise<{ url: string; server: Server }> {
  const s = createServer((req, res) => {
    const coep = new URL(req.url ?? '/', 'http://x').searchParams.get('coep');
    if (req.url === '/favicon.ico') return void res.writeHead(204).end();
    if (!req.url?.startsWith('/page.html')) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...(coep ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': coep } : {}) }).end(SITE_PAGE);
  });
  await new Promise<void>((done) => s.listen(0, '127.0.0.1', done));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, server: s };
}

beforeAll(async () => {
  await fixtures();
  files = await startRangeServer(FIXTURE_DIR);
  server = await startSignalingServer({
    staticDir: APP_DIR,
    heartbeatMs: 1000,
    mount: (req, res) => {
      const plain = plainFiles(req.url);
      if (!plain) return false;
      res.writeHead(plain.body.length ? 200 : 404, { 'content-type': plain.type }).end(plain.body);
      return true;
    },
  });
  site = await startSite();
  const config = readConfig(await openFixture(MODEL));
  spec = { modelId: MODEL, source: `${files.url}/${MODEL}`, numLayers: config.numLayers, hiddenSize: config.hiddenSize, layerBytes: 1024 * 1024, weightDtype: 'f32', replication: 1 };
  chromium = await launchChromium();
});

afterAll(async () => {
  for (const c of closers.splice(0)) c.close();
  await chromium?.close();
  site?.server.closeAllConnections();
  await new Promise((done) => site?.server.close(done));
  await files?.close();
  await server?.close();
});

describe('cross-origin isolation of the web app', () => {
  it('every file of the app is sent with COOP/COEP, and any origin may load it (CORS and CORP)', async () => {
    const chunk = readdirSync(join(APP_DIR, 'assets')).find((f) => f.endsWith('.js'))!;
    const ort = readdirSync(join(APP_DIR, 'ort')).find((f) => f.endsWith('.wasm'))!;
    for (const path of ['/', '/index.html', '/sdk.js', `/assets/${chunk}`, `/ort/${ort}`]) {
      const res = await fetch(`${server.httpUrl}${path}`, { method: 'HEAD' });
      expect(res.status, path).toBe(200);
      expect(Object.fromEntries([...Object.keys(ISOLATION), 'cross-origin-resource-policy', 'access-control-allow-origin'].map((h) => [h, res.headers.get(h)])), path).toEqual({
        ...ISOLATION,
        'cross-origin-resource-policy': 'cross-origin',
        'access-control-allow-origin': '*',
      });
    }
  });

  it('the app page is crossOriginIsolated and its CPU backend runs the SIMD kernels; without the headers it runs blocked JS', async () => {
    const isolated = await openPage(chromium.browser, `${server.httpUrl}/`);
    // Its linears run on the page's cores: workers, and the main thread spinning on their shares.
    const cores = await isolated.page.evaluate(() => navigator.hardwareConcurrency);
    expect(await isolated.page.evaluate(() => window.aigridApp.cpuKernels())).toEqual({ crossOriginIsolated: true, simd: true, threads: cores });
    const plain = await openPage(chromium.browser, `${server.httpUrl}/plain/`);
    expect(await plain.page.evaluate(() => window.aigridApp.cpuKernels())).toEqual({ crossOriginIsolated: false, simd: false, threads: 1 });
    await plain.page.close();
    expect(isolated.errors).toEqual([]);
    expect(plain.errors).toEqual([]);
    await isolated.page.close();
  });

  it('the isolated page serves tiny-llama on its CPU backend: weights from another origin, WebRTC, golden tokens', async () => {
    const { page, errors } = await openPage(chromium.browser, `${server.httpUrl}/`);
    const pagePeer = await page.evaluate(async (network) => (await window.aigridApp.join({ network, autoConnect: false })).peerId, NETWORK);
    const status = await page.evaluate((model) => window.aigridApp.contribute({ model, start: 0, end: model.numLayers, backend: 'cpu', cache: false }), spec);
    expect(status).toMatchObject({ modelId: MODEL, start: 0, end: spec.numLayers, state: 'ready' });
    expect(await page.evaluate(() => window.aigridApp.cpuKernels())).toMatchObject({ crossOriginIsolated: true, simd: true });
    // Read with Range requests from the range server's origin (CORS), not the page's.
    expect(new URL(files.url).origin).not.toBe(new URL(server.httpUrl).origin);
    expect(files.requests.some((r) => r.file === `${MODEL}/model.safetensors` && r.status === 206)).toBe(true);

    const client = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network: NETWORK, capabilities: CAPABILITIES, autoConnect: false, maxConnections: 4, identity: testIdentity('isolation-client') });
    closers.push(client);
    await client.start();
    await waitFor(() => client.peers().some((p) => p.peerId === pagePeer), 5000, 'the page in the directory');
    const chain = new RemoteChain({ mesh: client, modelId: MODEL, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, routes: explicitRoutes([route([pagePeer, 0, spec.numLayers])]) });
    closers.push(chain);
    const head = await Head.load(await openFixture(MODEL), { backend: 'cpu' });
    try {
      const model = (await fixtures()).models.find((m) => m.name === MODEL)!;
      for (const golden of model.golden.slice(0, 2)) {
        const result = await chain.generate(head, golden.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 });
        expect(result.tokens, golden.prompt).toEqual(golden.greedy);
      }
    } finally {
      head.destroy();
    }
    // The only console errors are the loader's probes for a sharded index (404: the model is one file).
    expect(errors.filter((e) => !/Failed to load resource: .* 404/.test(e))).toEqual([]);
    await page.close();
  });

  it('a page on another origin imports /sdk.js and connects; its own headers decide whether it is isolated', async () => {
    // A network of its own where the Node SDK serves the model, so the pages have one to list.
    const network = `${NETWORK}-elsewhere`;
    const sdk = await connect({ signal: server.wsUrl, network });
    closers.push(sdk);
    await sdk.serve({ source: `${files.url}/${MODEL}`, modelId: MODEL, replication: 1 });
    const outcomes: Record<string, unknown> = {};
    for (const coep of ['', 'require-corp', 'credentialless']) {
      const query = new URLSearchParams({ sdk: `${server.httpUrl}/sdk.js`, signal: server.wsUrl, network, ...(coep ? { coep } : {}) });
      const { page, errors } = await openPage(chromium.browser, `${site.url}/page.html?${query}`);
      await page.waitForFunction(() => 'outcome' in window, { timeout: 20_000, polling: 100 });
      outcomes[coep || 'none'] = await page.evaluate(() => (window as unknown as { outcome: unknown }).outcome);
      expect(errors, coep).toEqual([]);
      await page.close();
    }
    const listed = { models: [MODEL] };
    expect(outcomes).toEqual({
      none: { crossOriginIsolated: false, sharedMemory: false, ...listed },
      'require-corp': { crossOriginIsolated: true, sharedMemory: true, ...listed },
      credentialless: { crossOriginIsolated: true, sharedMemory: true, ...listed },
    });
  });
});
