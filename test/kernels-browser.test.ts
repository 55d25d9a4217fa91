// Every kernel case in headless Chromium on its WebGPU adapter (SwiftShader here), served by a
// Vite dev server so the page runs the same TypeScript as Node.
import type { Page } from 'puppeteer-core';
import { createServer, type ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, openPage, type TestBrowser } from './helpers/chromium.ts';
import { KERNEL_CASES } from './kernels/cases.ts';

let vite: ViteDevServer;
let chromium: TestBrowser;
let page: Page;
let errors: string[];

beforeAll(async () => {
  vite = await createServer({
    configFile: false,
    root: new URL('..', import.meta.url).pathname,
    logLevel: 'error',
    // Cross-origin isolated, as the app is: the CPU cases need shared memory and worker threads.
    server: {
      host: '127.0.0.1', port: 0, hmr: false, watch: null,
      headers: { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' },
    },
    optimizeDeps: { noDiscovery: true, include: [] },
  });
  await vite.listen();
  const address = vite.httpServer!.address() as { port: number };
  chromium = await launchChromium();
  ({ page, errors } = await openPage(chromium.browser, `http://127.0.0.1:${address.port}/test/kernels/page.html`));
  await page.waitForFunction(() => document.title === 'ready', { timeout: 30_000 });
});

afterAll(async () => {
  await chromium?.close();
  await vite?.close();
});

describe('kernels in Chromium (WebGPU)', () => {
  for (const kernelCase of KERNEL_CASES) {
    it(kernelCase.name, async () => {
      const outcome = await page.evaluate(
        (name) => (window as unknown as { runKernelCase(n: string): Promise<{ ok: boolean; detail: string; adapter: string }> }).runKernelCase(name),
        kernelCase.name,
      );
      expect(outcome.adapter).not.toBe('');
      expect(outcome.ok, outcome.detail).toBe(true);
      expect(errors).toEqual([]);
    });
  }
});
