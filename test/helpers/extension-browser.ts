// Headless Chromium with the built extension (dist/extension) loaded unpacked, WebGPU on
// SwiftShader and WebRTC on loopback; handles on the extension's service worker and pages.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type Page, type Target, type WebWorker } from 'puppeteer-core';
import { CHROME_PATH, CHROMIUM_ARGS } from './chromium.ts';
import { waitFor } from './wait.ts';

export const EXTENSION_DIR = fileURLToPath(new URL('../../dist/extension', import.meta.url));


/** Builds dist/extension (npm run build does too); used when a test finds no build. */
export async function buildExtension(): Promise<void> {
  const { build } = await import('vite');
  await build({ configFile: fileURLToPath(new URL('../../vite.extension.config.ts', import.meta.url)), logLevel: 'warn' });
}

export interface ExtensionBrowser {
  browser: Browser;
  extensionId: string;
  /** The browser profile (chrome.storage lives there); pass it to a later launch to restart. */
  profile: string;
  /** The extension's service worker (restarted workers are found again). */
  worker(): Promise<WebWorker>;
  /** Opens one of the extension's pages (popup.html, options.html) as a tab. */
  openExtensionPage(path: string): Promise<Page>;
  /**
   * Sends a runtime message from an extension page, as the popup does (a service worker does not
   * receive its own messages), and returns the answer.
   */
  message<T>(message: unknown): Promise<T>;
  /** Closes the browser, and deletes the profile unless it is kept for a restart. */
  close(options?: { keepProfile?: boolean }): Promise<void>;
}

/** Launches Chromium with the extension, in a new profile or in `profile` (a restart). */
export async function launchWithExtension(profile?: string): Promise<ExtensionBrowser> {
  if (!existsSync(CHROME_PATH)) throw new Error(`Chromium not found at ${CHROME_PATH}: apt-get install chromium, or set CHROME_PATH`);
  if (!existsSync(join(EXTENSION_DIR, 'manifest.json'))) await buildExtension();
  const userDataDir = profile ?? mkdtempSync(join(tmpdir(), 'aigrid-extension-'));
  const browser = await puppeteer.launch({
    executablePath: CHROME_PATH,
    headless: true,
    pipe: true,
    enableExtensions: [EXTENSION_DIR],
    userDataDir,
    args: CHROMIUM_ARGS,
  });
  const isWorker = (t: Target) => t.type() === 'service_worker' && t.url().startsWith('chrome-extension://') && t.url().endsWith('/background.js');
  const first = await browser.waitForTarget(isWorker, { timeout: 20_000 });
  const extensionId = new URL(first.url()).host;
  let probe: Page | null = null;
  const openExtensionPage = async (path: string) => {
    const page = await browser.newPage();
    await page.goto(`chrome-extension://${extensionId}/${path}`, { waitUntil: 'load' });
    return page;
  };
  return {
    browser,
    extensionId,
    profile: userDataDir,
    async worker() {
      const target = await browser.waitForTarget(isWorker, { timeout: 20_000 });
      const worker = (await target.worker())!;
      // A worker that has just started may not have its extension APIs bound yet.
      await waitFor(() => worker.evaluate(() => typeof chrome !== 'undefined' && !!chrome.storage), 5000, 'the extension APIs in the service worker');
      return worker;
    },
    openExtensionPage,
    async message<T>(message: unknown) {
      // Any page of the extension will do; the extension's reload closes it.
      if (!probe || probe.isClosed()) probe = await openExtensionPage('options.html');
      return (await probe.evaluate((m) => chrome.runtime.sendMessage(m), message)) as T;
    },
    async close(options = {}) {
      await browser.close().catch(() => {});
      if (!options.keepProfile) rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
