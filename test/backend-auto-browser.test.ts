// A page contributing with backend 'auto' serves on whichever backend it measures faster on the
// assigned model's shapes, not on WebGPU because an adapter exists. In headless Chromium the only
// adapter is SwiftShader's (software), so the web app's Contribute page, which announced WebGPU from
// its benchmark, ends up serving tiny-llama on the CPU: its status says so with both timings, the
// network sees the CPU announced, and the Node SDK gets the golden tokens through the page.
import { fileURLToPath } from 'node:url';
import type { Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Grid } from '../client/sdk/node.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { launchChromium, openPage, type TestBrowser } from './helpers/chromium.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { waitFor } from './helpers/wait.ts';
import { FIXTURE_DIR, fixtures } from './fixtures/index.ts';

const APP_DIR = fileURLToPath(new URL('../dist/app', import.meta.url));
const NETWORK = 'backend-auto';
const MODEL = 'tiny-llama';
/** The choice and both predicted timings of a pass over its layers, as the contribution's status reports them. */
const DETAIL = /^ready: auto: (cpu|webgpu) \(a pass over its layers: cpu (\d+\.\d+) ms, webgpu (\d+\.\d+) ms on (.+); measured on 128x64 \+ 64x128 f32\)$/;

let server: SignalingServer;
let files: RangeServer;
let chromium: TestBrowser;
let sdk: Grid;

const text = (page: Page, selector: string) => page.$eval(selector, (e) => e.textContent ?? '');

beforeAll(async () => {
  await fixtures();
  files = await startRangeServer(FIXTURE_DIR);
  server = await startSignalingServer({ staticDir: APP_DIR, heartbeatMs: 1000 });
  sdk = await connect({ signal: server.wsUrl, network: NETWORK });
  await sdk.serve({ source: `${files.url}/${MODEL}`, modelId: MODEL, replication: 1 });
  chromium = await launchChromium();
});

afterAll(async () => {
  sdk?.close();
  await chromium?.close();
  await files?.close();
  await server?.close();
});

describe("a contributing page with backend 'auto'", () => {
  it('measures both backends on the assigned shapes and serves on the faster: the CPU on SwiftShader', async () => {
    const { page, errors } = await openPage(chromium.browser, `${server.httpUrl}/?network=${NETWORK}#contribute`);
    await page.waitForFunction(() => document.getElementById('state')?.textContent === 'open', { timeout: 15_000, polling: 100 });
    // The page's only adapter is a software one; its benchmark makes it announce WebGPU at Start.
    expect(await page.evaluate(async () => (await navigator.gpu.requestAdapter())?.info.architecture)).toBe('swiftshader');
    await page.waitForFunction(() => /WebGPU: [\d.]+ GFLOP\/s/.test(document.getElementById('bench-result')!.textContent ?? ''), { timeout: 20_000 });
    expect(await page.$eval('#backend', (e) => (e as HTMLSelectElement).value)).toBe('auto');
    await page.$eval('#budget', (e) => ((e as HTMLInputElement).value = '64'));
    await page.click('#start');

    const row = `#assignment tbody tr[data-model="${MODEL}"]`;
    await page.waitForSelector(`${row} .state-ready`, { timeout: 30_000 });
    const state = await text(page, `${row} td:nth-child(3)`);
    const [, choice, cpuMs, webgpuMs, adapter] = DETAIL.exec(state) ?? [];
    expect(state).toMatch(DETAIL);
    // Both measured; the one predicted faster serves, and on this adapter that is the CPU.
    expect(Number(cpuMs)).toBeGreaterThan(0);
    expect(Number(webgpuMs)).toBeGreaterThan(Number(cpuMs));
    expect(choice).toBe('cpu');
    expect(adapter).toMatch(/swiftshader/i);

    // The network sees the serving peer announce the CPU (it announced WebGPU when it joined).
    const servingId = await text(page, '#contribution-peer');
    const announced = () => sdk.mesh.peers().find((p) => p.peerId === servingId)?.capabilities.throughput.backend;
    await waitFor(() => announced() === 'cpu', 10_000, 'the serving peer announcing the CPU');

    // And it serves: the golden greedy tokens through the page.
    await waitFor(async () => (await sdk.models.list()).data[0]?.health === 'ready', 20_000, `${MODEL} ready on the page`);
    const model = (await fixtures()).models.find((m) => m.name === MODEL)!;
    for (const g of model.golden.slice(0, 2)) {
      const out = await sdk.generate({ model: MODEL, prompt: g.ids, maxTokens: g.greedy.length, temperature: 0, stopTokens: [] });
      expect(out.tokens).toEqual(g.greedy);
      expect(out.aigrid.route.map((h) => h.peerId)).toEqual([servingId]);
    }
    expect(errors.filter((e) => !/Failed to load resource: .* 404/.test(e))).toEqual([]);
  });
});
