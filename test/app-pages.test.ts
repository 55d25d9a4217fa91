// The web app's three pages in real Chromium against a real grid: a signaling server serving
// dist/app, two Node peers with room for one tiny-llama layer each, and the model served through
// the Node SDK. Contribute: the page shows its adapter, limits and benchmark, and Start gets it the
// layers the Node peers cannot hold. Playground: a streamed greedy reply equals the Node SDK's, with
// its route and speed. Network: every peer and the model's per-layer coverage, and the plots. The
// README's page snippet (test/snippets/page-snippet.html), served as it is, streams the same reply.
// Every page is screenshotted and checked for its key elements.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridPeer } from '../client/grid/index.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import { Mesh } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import { connect, type Grid, type ModelSpec } from '../client/sdk/node.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { launchChromium, openPage, type TestBrowser } from './helpers/chromium.ts';
import { CAPABILITIES } from './helpers/grid-net.ts';
import { expectVisibleIn, newDecoder, screenshot } from './helpers/page-shots.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { waitFor } from './helpers/wait.ts';
import { FIXTURE_DIR, fixtures } from './fixtures/index.ts';
import { idOf, testIdentity } from './helpers/identities.ts';

const APP_DIR = fileURLToPath(new URL('../dist/app', import.meta.url));
const SNIPPET = fileURLToPath(new URL('./snippets/page-snippet.html', import.meta.url));
const NETWORK = 'app-pages';
const MODEL = 'tiny-llama';
const NODE_PEERS = ['app-node-a', 'app-node-b'];
const NOTICE = 'A test checkpoint with random weights: its replies are random words.';

let server: SignalingServer;
let files: RangeServer;
let chromium: TestBrowser;
let sdk: Grid;
let spec: ModelSpec;
let decoder: Page;
let shots: string;
const meshes: Mesh[] = [];
const peers: GridPeer[] = [];
/** The contributing page, opened by the first test and used by the later ones. */
let contributor: { page: Page; errors: string[]; peerId: string; servingId: string } | undefined;
/** Peers of the pages opened since (each joins the network). */
const pagePeers: string[] = [];

/** Console errors other than the checkpoint loader's probe for a sharded index (a 404: the model is one file). */
const unexpected = (errors: string[]) => errors.filter((e) => !/Failed to load resource: .* 404/.test(e));

const text = (page: Page, selector: string) => page.$eval(selector, (e) => e.textContent ?? '');

async function open(path: string): Promise<{ page: Page; errors: string[] }> {
  return openPage(chromium.browser, `${server.httpUrl}${path}`);
}

async function joined(page: Page): Promise<string> {
  // Polled by time, not animation frames: a tab in the background gets none.
  await page.waitForFunction(() => document.getElementById('state')?.textContent === 'open', { timeout: 15_000, polling: 100 });
  return text(page, '#peer-id');
}

/** The reply the Node SDK gives to one user message at temperature 0. */
async function greedyReply(content: string, maxTokens: number): Promise<string> {
  const reply = await sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: maxTokens, temperature: 0 });
  return reply.choices[0]!.message.content;
}

beforeAll(async () => {
  await fixtures();
  files = await startRangeServer(FIXTURE_DIR);
  const snippet = (url = '') => url.split('?')[0] === '/page-snippet.html';
  server = await startSignalingServer({
    staticDir: APP_DIR,
    heartbeatMs: 1000,
    mount: (req, res) => {
      if (!snippet(req.url)) return false;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(readFileSync(SNIPPET));
      return true;
    },
  });
  sdk = await connect({ signal: server.wsUrl, network: NETWORK });
  spec = await sdk.serve({ source: `${files.url}/${MODEL}`, modelId: MODEL, replication: 1, notice: NOTICE });
  // Room for one layer each: the model is whole only once a page contributes the rest.
  const memoryBudgetMB = (spec.layerBytes * 1.5) / 2 ** 20;
  for (const peerId of NODE_PEERS) {
    const mesh = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network: NETWORK, capabilities: { ...CAPABILITIES, memoryBudgetMB }, autoConnect: false, maxConnections: 16, identity: testIdentity(peerId) });
    meshes.push(mesh);
    await mesh.start();
    peers.push(new GridPeer({ mesh, backend: 'cpu', open: checkpointOpener(openCheckpointNode, { cache: false }) }));
  }
  chromium = await launchChromium();
  decoder = await newDecoder(chromium.browser);
  // AIGRID_SHOTS=folder keeps the screenshots for a look.
  shots = process.env.AIGRID_SHOTS ?? mkdtempSync(join(tmpdir(), 'aigrid-app-shots-'));
});

afterAll(async () => {
  sdk?.close();
  for (const p of peers.splice(0)) p.close();
  for (const m of meshes.splice(0)) m.close();
  await chromium?.close();
  await files?.close();
  await server?.close();
  if (shots && !process.env.AIGRID_SHOTS) rmSync(shots, { recursive: true, force: true });
});

describe('web app pages', () => {
  it('Contribute: shows the adapter, its limits and a benchmark; Start gets layers from the coordinator', async () => {
    expect((await sdk.models.list()).data[0]!.health).toBe('unavailable');
    const { page, errors } = await open(`/?network=${NETWORK}#contribute`);
    const peerId = await joined(page);
    // WebGPU on SwiftShader: the adapter and its limits, then the GPU and CPU benchmark.
    await page.waitForSelector('#adapter:not([hidden])');
    expect(await text(page, '#adapter-vendor')).not.toBe('');
    const limits = await page.$$eval('#limits tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.limit));
    expect(limits).toEqual(expect.arrayContaining(['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize']));
    await page.waitForFunction(() => /WebGPU: [\d.]+ GFLOP\/s · CPU: [\d.]+ GFLOP\/s/.test(document.getElementById('bench-result')!.textContent ?? ''), { timeout: 20_000 });

    await page.$eval('#budget', (e) => ((e as HTMLInputElement).value = '64'));
    await page.click('#start');
    await page.waitForSelector(`#assignment tbody tr[data-model="${MODEL}"] .state-ready`, { timeout: 20_000 });
    const row = `#assignment tbody tr[data-model="${MODEL}"]`;
    expect(await text(page, `${row} td`)).toBe(MODEL);
    // The Node peers hold one layer each at most, so the page holds at least two.
    const [start, end] = await page.$eval(row, (tr) => [Number((tr as HTMLElement).dataset.start), Number((tr as HTMLElement).dataset.end)]);
    expect(end! - start!).toBeGreaterThanOrEqual(2);
    expect(await text(page, `${row} td:nth-child(2)`)).toBe(`layers ${start}–${end! - 1}`);
    expect(await page.$eval('#download-bar', (e) => [(e as HTMLProgressElement).value, (e as HTMLProgressElement).max])).toSatisfy(([v, max]: number[]) => v! > 0 && v === max);
    expect(await text(page, '#contribution-state')).toContain(`Serving ${MODEL}`);
    // The layers are served by a peer of the tab's own, beside its client peer.
    const servingId = await text(page, '#contribution-peer');
    expect(servingId).toMatch(/^[A-Za-z0-9_-]{8,}$/);
    expect(servingId).not.toBe(peerId);
    await waitFor(async () => (await sdk.models.list()).data[0]!.health === 'ready', 10_000, 'tiny-llama ready with the page');
    // Uptime ticks while it runs.
    await page.waitForFunction(() => document.getElementById('uptime')!.textContent !== '0 s', { timeout: 5000 });
    await page.$eval('#stop', (e) => e.scrollIntoView());

    const shot = await screenshot(page, shots, 'contribute');
    await expectVisibleIn(page, shot, ['#nav', '#gpu-panel', '#limits', '#bench-result', '#start', '#assignment', '#download', '#stop'], decoder);
    expect(unexpected(errors)).toEqual([]);
    contributor = { page, errors, peerId, servingId };
  });

  it('Contribute without WebGPU explains that the CPU fallback will be used', async () => {
    const page = await chromium.browser.newPage();
    const errors: string[] = [];
    page.on('console', (msg) => void (msg.type() === 'error' && errors.push(msg.text())));
    page.on('pageerror', (err) => void errors.push(String(err)));
    await page.evaluateOnNewDocument(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    await page.goto(`${server.httpUrl}/#contribute`, { waitUntil: 'load' });
    await page.waitForFunction(() => /CPU: [\d.]+ GFLOP\/s/.test(document.getElementById('bench-result')!.textContent ?? ''), { timeout: 10_000 });
    const status = await text(page, '#gpu-status');
    expect(status).toMatch(/^No WebGPU: .*navigator\.gpu is missing/);
    expect(status).toContain('CPU fallback');
    expect(await text(page, '#bench-result')).toMatch(/^WebGPU: none · CPU: [\d.]+ GFLOP\/s/);
    expect(await page.$eval('#adapter', (e) => (e as HTMLElement).hidden)).toBe(true);
    // Without ?network= the tab joins "default", as a client that offers no memory.
    await joined(page);
    expect(await page.$eval('#network', (e) => (e as HTMLInputElement).value)).toBe('default');
    expect(await page.evaluate(() => window.aigridApp.mesh?.signaling.capabilities.memoryBudgetMB)).toBe(0);
    const shot = await screenshot(page, shots, 'contribute-no-webgpu');
    await expectVisibleIn(page, shot, ['#gpu-status', '#bench-result', '#start'], decoder);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('Playground: a streamed greedy reply equals the Node SDK reply, with its route and speed; Stop aborts a reply', async () => {
    const message = 'the quick brown fox';
    const maxTokens = 16;
    const expected = await greedyReply(message, maxTokens);
    expect(expected.length).toBeGreaterThan(0);

    const { page, errors } = await open(`/?network=${NETWORK}#playground`);
    pagePeers.push(await joined(page));
    await page.waitForFunction((model) => document.querySelector<HTMLSelectElement>('#model')?.value === model, { timeout: 10_000 }, MODEL);
    expect(await text(page, '#model-health')).toMatch(/^ready/);
    expect(await text(page, '#model-notice')).toBe(NOTICE);
    const set = (selector: string, value: string) => page.$eval(selector, (e, v) => ((e as HTMLInputElement).value = v), value);
    await set('#temperature', '0');
    await set('#max-tokens', String(maxTokens));
    await page.type('#prompt', message);
    await page.click('#send');
    await page.waitForSelector('.message.assistant.done .meta .speed', { timeout: 20_000 });
    expect(await text(page, '.message.user .content')).toBe(message);
    expect(await text(page, '.message.assistant .content')).toBe(expected);
    // The route: hops from layer 0 to the last, through the contributing page.
    const hops = await page.$$eval('.message.assistant .hop', (spans) => spans.map((s) => ({ ...(s as HTMLElement).dataset })));
    expect(hops.length).toBeGreaterThan(0);
    expect(hops[0]!.start).toBe('0');
    expect(hops.at(-1)!.end).toBe(String(spec.numLayers));
    for (const [i, hop] of hops.entries()) if (i) expect(hop.start).toBe(hops[i - 1]!.end);
    expect(hops.map((h) => h.peerId)).toContain(contributor!.servingId);
    expect(Number((await text(page, '.message.assistant .speed')).split(' ')[0])).toBeGreaterThan(0);
    expect(await page.$eval('#send', (b) => (b as HTMLButtonElement).disabled)).toBe(false);

    const shot = await screenshot(page, shots, 'playground');
    await expectVisibleIn(page, shot, ['#nav', '#chat-settings', '#model-notice', '.message.user', '.message.assistant', '.message.assistant .meta', '#prompt', '#send'], decoder);

    // Stop mid-reply: the same prompt (history cleared) runs greedily past 200 tokens without an
    // end of sequence, so the reply is still streaming when Stop is pressed.
    await page.click('#chat-clear');
    await set('#max-tokens', '200');
    await page.type('#prompt', message);
    await page.click('#send');
    await page.waitForFunction(() => (document.querySelector('.message.assistant .content')?.textContent ?? '') !== '', { timeout: 10_000 });
    await page.click('#chat-stop');
    await page.waitForSelector('.message.assistant.done .meta .note', { timeout: 5000 });
    expect(await text(page, '.message.assistant .note')).toBe('Stopped.');
    expect(await page.$('.message.assistant .speed')).toBeNull();
    const partial = await text(page, '.message.assistant .content');
    expect(partial.split(' ').length).toBeLessThan(200);
    expect(partial.startsWith(expected) || expected.startsWith(partial)).toBe(true);
    // The session was released along the route.
    await waitFor(() => peers.every((p) => p.sessionCount === 0), 5000, 'sessions released on the Node peers');
    expect(await text(page, '#chat-error')).toBe('');
    expect(unexpected(errors)).toEqual([]);
  });

  it('Network: every peer, the model coverage per layer, and the plots', async () => {
    const { page, errors } = await open(`/?network=${NETWORK}#network`);
    const self = await joined(page);
    const others = [...NODE_PEERS.map(idOf), sdk.peerId, contributor!.peerId, contributor!.servingId, ...pagePeers];
    await waitFor(async () => {
      const rows = await page.$$eval('#peers tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.peerId));
      return others.every((id) => rows.includes(id));
    }, 10_000, 'every peer in the table');
    expect(await page.$eval('#peers tfoot tr', (tr) => (tr as HTMLElement).dataset.peerId)).toBe(self);
    const contributorRow = await page.$eval(`#peers tbody tr[data-peer-id="${contributor!.servingId}"]`, (tr) => [...(tr as HTMLTableRowElement).cells].map((c) => c.textContent));
    expect(contributorRow[1]).toBe('browser');
    expect(contributorRow[3]).toBe('64');
    // Each serving peer's row says which layers it serves, as the coordinator heard it.
    await waitFor(async () => {
      const serving = await page.$$eval(`#peers tbody tr`, (trs) => trs.map((tr) => (tr as HTMLTableRowElement).cells[7]?.textContent ?? ''));
      return serving.filter((t) => new RegExp(`^${MODEL} \\[\\d, \\d\\) ready`).test(t)).length >= 3;
    }, 10_000, 'the serving column of the Node peers and the contributing tab');
    // And what clients' spot-checks found of each peer (none wrong here; all keys are new).
    const trustCells = await page.$$eval(`#peers tbody tr`, (trs) => trs.map((tr) => (tr as HTMLTableRowElement).cells[8]?.textContent ?? ''));
    expect(trustCells.length).toBeGreaterThan(0);
    for (const t of trustCells) expect(t).toMatch(/^\d+ verified · new$/);
    await page.waitForSelector(`#models [data-model="${MODEL}"] .health-ready`, { timeout: 10_000 });
    expect(await text(page, `#models [data-model="${MODEL}"] .notice`)).toBe(NOTICE);
    const cells = await page.$$eval(`#models [data-model="${MODEL}"] .layer`, (spans) => spans.map((s) => [s.className, s.textContent]));
    expect(cells).toEqual(Array(spec.numLayers).fill(['layer layer-full', '1']));
    // Two samples drawn in each plot.
    await page.waitForFunction(() => document.querySelectorAll('#charts canvas').length === 3, { timeout: 10_000 });
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLElement>('.chart')].every((c) => Number(c.dataset.samples) >= 2), { timeout: 10_000 });
    expect(await text(page, '#net-summary')).toContain(`${others.length + 1} peers`);

    const shot = await screenshot(page, shots, 'network');
    await expectVisibleIn(page, shot, ['#nav', '#peers', `#models [data-model="${MODEL}"] .layers`, '#chart-throughput canvas', '#chart-latency canvas', '#chart-peers canvas'], decoder);
    expect(unexpected(errors)).toEqual([]);
  });

  it("the README's page snippet streams the same reply from /sdk.js", async () => {
    const expected = await greedyReply('Tell me about the grid.', 24);
    const { page, errors } = await open(`/page-snippet.html?network=${NETWORK}`);
    await page.waitForFunction(() => document.getElementById('info')!.textContent !== '', { timeout: 20_000 });
    expect(await text(page, '#reply')).toBe(expected);
    expect(await text(page, '#info')).toMatch(/^[\d.]+ tokens\/s via .+ \[0, \d\)/);
    const shot = await screenshot(page, shots, 'snippet');
    await expectVisibleIn(page, shot, ['#reply', '#info'], decoder);
    expect(unexpected(errors)).toEqual([]);
  });

  it('the contributing tab chats through its own serving peer; Stop frees the layers and leaves', async () => {
    const { page, errors, servingId } = contributor!;
    await page.bringToFront();
    await page.evaluate(() => (location.hash = '#playground'));
    await page.waitForFunction((model) => document.querySelector<HTMLSelectElement>('#model')?.value === model, { timeout: 10_000 }, MODEL);
    await page.$eval('#temperature', (e) => ((e as HTMLInputElement).value = '0'));
    await page.$eval('#max-tokens', (e) => ((e as HTMLInputElement).value = '16'));
    await page.type('#prompt', 'the quick brown fox');
    await page.click('#send');
    await page.waitForSelector('.message.assistant.done .meta .speed', { timeout: 20_000 });
    expect(await text(page, '.message.assistant .content')).toBe(await greedyReply('the quick brown fox', 16));
    expect(await page.$$eval('.message.assistant .hop', (spans) => spans.map((s) => (s as HTMLElement).dataset.peerId))).toContain(servingId);

    await page.evaluate(() => (location.hash = '#contribute'));
    // The replies of the Playground pages and the snippet ran through this tab's layers.
    expect(Number(await text(page, '#tokens-served'))).toBeGreaterThan(0);
    await page.click('#stop');
    await page.waitForFunction(() => document.getElementById('contribution-state')!.textContent === 'Not contributing.', { timeout: 5000 });
    expect(await page.$$('#assignment tbody tr')).toHaveLength(0);
    expect(await text(page, '#contribution-peer')).toBe('–');
    expect(await page.$eval('#start', (b) => (b as HTMLButtonElement).disabled)).toBe(false);
    await waitFor(() => !sdk.mesh.peers().some((p) => p.peerId === servingId), 5000, 'the serving peer gone from the directory');
    await waitFor(async () => (await sdk.models.list()).data[0]!.health !== 'ready', 5000, 'the model no longer whole');
    expect(unexpected(errors)).toEqual([]);
  });

  it('a tab keeps its identity across a reload; a tab open beside it has its own; the key cannot be read out', async () => {
    const { page, errors } = await open(`/?network=${NETWORK}#network`);
    const id = await joined(page);
    const beside = await open(`/?network=${NETWORK}#network`);
    const other = await joined(beside.page);
    expect(other).not.toBe(id);
    await page.reload();
    expect(await joined(page)).toBe(id);
    expect(await joined(beside.page)).toBe(other);
    // The private keys in IndexedDB are WebCrypto keys that sign but cannot be exported.
    const stored = await page.evaluate(async () => {
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const req = indexedDB.open('aigrid-identity');
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      const pairs = await new Promise<CryptoKeyPair[]>((resolve) => {
        const req = db.transaction('keys').objectStore('keys').getAll();
        req.onsuccess = () => resolve(req.result as CryptoKeyPair[]);
      });
      const exported = await Promise.all(pairs.map((p) => crypto.subtle.exportKey('pkcs8', p.privateKey).then(() => 'exported', () => 'refused')));
      return { count: pairs.length, extractable: pairs.map((p) => p.privateKey.extractable), exported };
    });
    expect(stored.count).toBeGreaterThanOrEqual(2);
    expect(stored.extractable.every((e) => e === false)).toBe(true);
    expect(stored.exported.every((e) => e === 'refused')).toBe(true);
    await beside.page.close();
    await page.close();
    expect(unexpected([...errors, ...beside.errors])).toEqual([]);
  });
});
