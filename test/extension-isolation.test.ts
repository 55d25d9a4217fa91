// The built extension's pages are cross-origin isolated (the manifest's cross_origin_opener_policy
// and cross_origin_embedder_policy): the offscreen document that holds the engine, where the CPU
// backend's WebAssembly SIMD kernels need shared memory, and the extension's own pages. Chromium
// also lets extension pages that are not isolated create shared memory, so crossOriginIsolated is
// what tells the manifest keys apart. Run in a loopback-only network namespace (see README).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchWithExtension, type ExtensionBrowser } from './helpers/extension-browser.ts';

let chromium: ExtensionBrowser;

beforeAll(async () => {
  chromium = await launchWithExtension();
});

afterAll(async () => {
  await chromium?.close();
});

/** What decides the CPU kernels' path, read in the calling document. */
function isolation(): { crossOriginIsolated: boolean; sharedMemory: boolean } {
  let sharedMemory = true;
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  } catch {
    sharedMemory = false;
  }
  return { crossOriginIsolated: globalThis.crossOriginIsolated === true, sharedMemory };
}

describe('extension isolation', () => {
  it('the offscreen document and the extension pages are crossOriginIsolated', async () => {
    const worker = await chromium.worker();
    // Created as the service worker creates the engine's document (background/offscreen-document.ts).
    await worker.evaluate(() => chrome.offscreen.createDocument({ url: 'offscreen.html', reasons: ['WORKERS'], justification: 'test' }));
    const target = await chromium.browser.waitForTarget((t) => t.url() === `chrome-extension://${chromium.extensionId}/offscreen.html`, { timeout: 10_000 });
    const session = await target.createCDPSession();
    const { result } = await session.send('Runtime.evaluate', { expression: `(${isolation.toString()})()`, returnByValue: true });
    expect(result.value).toEqual({ crossOriginIsolated: true, sharedMemory: true });
    await session.detach();
    const options = await chromium.openExtensionPage('options.html');
    expect(await options.evaluate(isolation)).toEqual({ crossOriginIsolated: true, sharedMemory: true });
    await options.close();
  });
});
