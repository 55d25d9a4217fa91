// Real headless Chromium for tests and benchmarks: Debian's build (CHROME_PATH or /usr/bin/chromium)
// with WebGPU on SwiftShader and WebRTC over loopback.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export const CHROME_PATH = process.env.CHROME_PATH ?? '/usr/bin/chromium';

const BASE_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];
const WEBGPU_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-webgpu-adapter=swiftshader',
  '--enable-unsafe-swiftshader',
];
// Without both the flag and a microphone/camera grant (see openPage) Chromium hides host
// candidates behind mDNS names and a loopback-only machine gathers none.
const WEBRTC_ARGS = ['--allow-loopback-in-peer-connection'];

/** Every flag the tests launch Chromium with: quiet, WebGPU on SwiftShader, WebRTC on loopback. */
export const CHROMIUM_ARGS = [...BASE_ARGS, ...WEBGPU_ARGS, ...WEBRTC_ARGS];

export interface TestBrowser {
  browser: Browser;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<TestBrowser> {
  if (!existsSync(CHROME_PATH)) {
    throw new Error(`Chromium not found at ${CHROME_PATH}: apt-get install chromium, or set CHROME_PATH`);
  }
  const userDataDir = mkdtempSync(join(tmpdir(), 'aigrid-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROME_PATH,
    headless: true,
    userDataDir,
    args: CHROMIUM_ARGS,
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Opens a page at url with WebRTC allowed on its origin; console errors are collected. */
export async function openPage(browser: Browser, url: string): Promise<{ page: Page; errors: string[] }> {
  await browser.defaultBrowserContext().overridePermissions(new URL(url).origin, ['microphone', 'camera']);
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(String(err)));
  await page.goto(url, { waitUntil: 'load' });
  return { page, errors };
}
