// The browser extension in real headless Chromium, against a real signaling server, the fixture
// files over HTTP Range and a Node peer: the options page points it at the test network, the popup
// turns contribution on and the extension serves layers of tiny-llama from its offscreen document
// (WebGPU on SwiftShader); a page's window.aigrid, once the person allowed its origin, streams the
// same greedy reply as the Node SDK; a refused origin gets a typed error; an abort in the page
// releases the sessions on every peer; "only when idle" pauses the contribution while the person
// is active; the contribution comes back after a browser restart, and turning it off releases the
// layers. Run in a loopback-only network namespace (see README).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page, Target } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type ChatCompletionChunk, type CompletionChunk, type Contribution, type Grid } from '../client/sdk/node.ts';
import type { ModelCoverage, PeerInfo } from '../protocol/index.ts';
import { PERMISSION_DENIED, type AigridProvider, type EngineStatus, type ExtensionState } from '../extension/src/protocol.ts';
import { fixtures } from './fixtures/index.ts';
import { launchWithExtension, type ExtensionBrowser } from './helpers/extension-browser.ts';
import { startPageServer, type PageServer } from './helpers/extension-pages.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';

const NETWORK = 'extension-grid';
const MODEL = 'tiny-llama';
const MB = 1024 * 1024;
const MESSAGES = [{ role: 'user', content: 'the quick brown fox' }];

let net: GridNet;
let chromium: ExtensionBrowser;
/** The Node SDK: the client whose replies the page's must equal, and its contribution (the Node peer). */
let client: Grid;
let nodeContribution: Contribution;
let allowedSite: PageServer;
let refusedSite: PageServer;
let popup: Page;
/** The memory budget (MB) that holds exactly two of tiny-llama's four layers. */
let twoLayersMB: number;

type ProviderWindow = Window & { aigrid: AigridProvider; pending?: Promise<unknown> };

interface NetworkView {
  peers: PeerInfo[];
  models: ModelCoverage[];
}

async function networkView(): Promise<NetworkView> {
  const res = await fetch(`${net.server.httpUrl}/api/networks/${NETWORK}`);
  return (await res.json()) as NetworkView;
}

function extensionState(): Promise<ExtensionState> {
  return chromium.message<ExtensionState>({ to: 'background', type: 'state' });
}

async function engineStatus(): Promise<EngineStatus> {
  const engine = (await extensionState()).engine;
  if (!engine) throw new Error('no engine running');
  return engine;
}

async function openSite(site: PageServer): Promise<Page> {
  const page = await chromium.browser.newPage();
  await page.goto(`${site.url}/`, { waitUntil: 'load' });
  return page;
}

/** Waits for the permission prompt the extension opens for an origin. */
async function permissionPrompt(origin: string): Promise<Page> {
  const isPrompt = (t: Target) => t.url().startsWith(`chrome-extension://${chromium.extensionId}/permission.html`) && t.url().includes(encodeURIComponent(origin));
  const target = await chromium.browser.waitForTarget(isPrompt, { timeout: 10_000 });
  const page = (await target.page())!;
  await page.waitForSelector('#allow');
  return page;
}

/** Whether the extension's permission prompt for an origin is open now. */
function promptOpen(origin: string): boolean {
  return chromium.browser.targets().some((t) => t.url().startsWith(`chrome-extension://${chromium.extensionId}/permission.html`) && t.url().includes(encodeURIComponent(origin)));
}

/**
 * Starts a call in the page (it may wait on the permission prompt); `settle` gets its outcome.
 * It counts as made during a user gesture (puppeteer evaluates with one, as a click handler would
 * run), so it may open the prompt.
 */
async function startInPage(page: Page, call: (aigrid: AigridProvider) => Promise<unknown>): Promise<{ settle: () => Promise<unknown> }> {
  await page.evaluate((source) => {
    const w = window as unknown as ProviderWindow;
    const fn = new Function('aigrid', `return (${source})(aigrid)`) as (a: AigridProvider) => Promise<unknown>;
    w.pending = fn(w.aigrid).then(
      (value) => ({ ok: true, value }),
      (err: Error & { code?: string }) => ({ ok: false, error: { name: err.name, code: err.code, message: err.message, typed: err instanceof w.aigrid.AigridError } }),
    );
  }, call.toString());
  return { settle: () => page.evaluate(() => (window as unknown as ProviderWindow).pending) };
}

function expectDenied(outcome: unknown, origin: string) {
  expect(outcome).toMatchObject({ ok: false, error: { name: 'AigridError', code: PERMISSION_DENIED, typed: true } });
  expect((outcome as { error: { message: string } }).error.message).toContain(origin);
}

beforeAll(async () => {
  await fixtures();
  net = await startGridNet();
  [allowedSite, refusedSite] = await Promise.all([startPageServer(), startPageServer()]);
  client = await connect({ signal: net.server.wsUrl, network: NETWORK });
  const spec = await client.serve({ source: `${net.files.url}/${MODEL}`, modelId: MODEL, replication: 1 });
  // Two layers' worth of memory each for the Node peer and the extension: together exactly one
  // copy of the model, so each takes all it can and the extension is sure to get layers.
  twoLayersMB = Math.round(((2.2 * spec.layerBytes) / MB) * 100) / 100;
  nodeContribution = await client.contribute({ memoryBudgetMB: twoLayersMB, backend: 'cpu' });
  chromium = await launchWithExtension();
});

afterAll(async () => {
  await chromium?.close();
  client?.close();
  await allowedSite?.close();
  await refusedSite?.close();
  await net?.close();
});

describe('browser extension', () => {
  it('the options page sets the signaling URL and the network', async () => {
    const options = await chromium.openExtensionPage('options.html');
    await options.waitForFunction(() => (document.getElementById('signal-url') as HTMLInputElement).value !== '');
    await options.$eval('#signal-url', (el, url) => ((el as HTMLInputElement).value = url), net.server.wsUrl);
    await options.$eval('#network', (el, name) => ((el as HTMLInputElement).value = name), NETWORK);
    await options.click('#save');
    await options.waitForFunction(() => document.getElementById('saved')?.textContent === 'Saved.');
    const state = await extensionState();
    expect(state.settings).toMatchObject({ signalUrl: net.server.wsUrl, network: NETWORK });
    expect(state.enabled).toBe(false);
    await options.close();
  });

  it('the popup turns contribution on: the extension joins the network as a peer and serves layers', async () => {
    popup = await chromium.openExtensionPage('popup.html');
    await popup.setViewport({ width: 340, height: 480 });
    await popup.waitForFunction((net) => document.getElementById('network')?.textContent === net, {}, NETWORK);
    await popup.$eval('#memory', (el, mb) => {
      (el as HTMLInputElement).value = String(mb);
      el.dispatchEvent(new Event('change'));
    }, twoLayersMB);
    await waitFor(async () => (await extensionState()).settings.memoryBudgetMB === twoLayersMB, 5000, 'memory budget stored');
    await popup.click('#enabled');

    // The extension's peer in the server's directory, with the budget, and layers ready.
    await waitFor(async () => (await networkView()).peers.some((p) => p.capabilities.kind === 'extension' && p.capabilities.memoryBudgetMB > 0), 20_000, 'the extension in the directory');
    await waitFor(async () => (await networkView()).models[0]?.ready.every((r) => r === 1) ?? false, 30_000, 'every layer ready');
    const engine = await engineStatus();
    expect(engine.state).toBe('contributing');
    expect(engine.webgpu).toBe(true);
    expect(engine.assignments).toHaveLength(1);
    const [assignment] = engine.assignments;
    expect(assignment).toMatchObject({ modelId: MODEL, state: 'ready' });
    expect(assignment!.end - assignment!.start).toBe(2);
    const peer = (await networkView()).peers.find((p) => p.peerId === engine.peerId);
    expect(peer?.capabilities).toMatchObject({ kind: 'extension', memoryBudgetMB: twoLayersMB });
    expect(peer?.capabilities.gpu?.architecture).toBe('swiftshader'); // the offscreen document's WebGPU adapter
    expect(nodeContribution.status()).toEqual([expect.objectContaining({ state: 'ready', start: assignment!.start === 0 ? 2 : 0 })]);

    // What the popup shows.
    await popup.waitForSelector('#assignments tbody tr[data-state="ready"]');
    expect(await popup.$eval('#assignments tbody tr', (tr) => [...(tr as HTMLTableRowElement).cells].map((c) => c.textContent))).toEqual([MODEL, `${assignment!.start}–${assignment!.end - 1}`, 'ready']);
    expect(await popup.$eval('#state', (el) => el.textContent)).toBe('serving');
    expect(await popup.$eval('#signal', (el) => el.textContent)).toBe(net.server.wsUrl);
    expect(await popup.$eval('#peer', (el) => el.textContent)).toBe(engine.peerId);
    expect(await popup.$eval('#power', (el) => el.textContent)).toMatch(/^\((on AC power|on battery|unknown on this platform)\)$/);
  });

  it('a page allowed by the person gets the Node SDK\'s reply through window.aigrid, streamed', async () => {
    const expected = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 12, temperature: 0 });
    const expectedText = expected.choices[0]!.message.content;
    expect(expectedText.length).toBeGreaterThan(0);

    const page = await openSite(allowedSite);
    expect(await page.evaluate(() => (window as unknown as ProviderWindow).aigrid.provider)).toBe('aigrid-extension');
    const call = await startInPage(page, async (aigrid) => {
      const stream = await aigrid.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'user', content: 'the quick brown fox' }], max_tokens: 12, temperature: 0, stream: true });
      const chunks: unknown[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      return { chunks, hasController: stream.controller instanceof AbortController };
    });
    const prompt = await permissionPrompt(allowedSite.url);
    expect(await prompt.$eval('#origin', (el) => el.textContent)).toBe(allowedSite.url);
    // Allow cannot be pressed at once (a click meant for the page must not land on it).
    expect(await prompt.$eval('#allow', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    await prompt.waitForSelector('#allow:not([disabled])');
    await prompt.click('#allow');
    const outcome = (await call.settle()) as { ok: boolean; value: { chunks: ChatCompletionChunk[]; hasController: boolean } };
    expect(outcome.ok, JSON.stringify(outcome)).toBe(true);
    const { chunks, hasController } = outcome.value;
    expect(hasController).toBe(true);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(2);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(expectedText);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe(expected.choices[0]!.finish_reason);
    // The route ran through the layers this same extension serves.
    const peerId = (await engineStatus()).peerId;
    expect(chunks.at(-1)!.aigrid!.route.map((h) => h.peerId)).toContain(peerId);

    // The other methods, now without asking again.
    const g = (await net.model(MODEL)).golden[0]!;
    const rest = await page.evaluate(async (ids, steps) => {
      const aigrid = (window as unknown as ProviderWindow).aigrid;
      const list = await aigrid.models.list();
      const text = await aigrid.completions.create({ model: 'tiny-llama', prompt: 'once upon a time', max_tokens: 8, temperature: 0 });
      const textChunks: CompletionChunk[] = [];
      for await (const c of await aigrid.completions.create({ model: 'tiny-llama', prompt: 'once upon a time', max_tokens: 8, temperature: 0, stream: true })) textChunks.push(c);
      const seen: number[] = [];
      const generated = await aigrid.generate({ model: 'tiny-llama', prompt: ids, maxTokens: steps, temperature: 0, stopTokens: [], onToken: (t) => seen.push(t) });
      return { list, text, streamed: textChunks.map((c) => c.choices[0]?.text ?? '').join(''), generated, seen };
    }, g.ids, g.greedy.length);
    expect(rest.list.data.map((m) => [m.id, m.health])).toEqual([[MODEL, 'ready']]);
    const nodeText = await client.completions.create({ model: MODEL, prompt: 'once upon a time', max_tokens: 8, temperature: 0 });
    expect(rest.text.choices[0]!.text).toBe(nodeText.choices[0]!.text);
    expect(rest.streamed).toBe(nodeText.choices[0]!.text);
    expect(rest.generated.tokens).toEqual(g.greedy);
    expect(rest.seen).toEqual(g.greedy);

    // Errors keep their type across the boundary.
    const bad = await startInPage(page, (aigrid) => aigrid.completions.create({ model: 'no-such-model', prompt: 'hi' }));
    expect(await bad.settle()).toMatchObject({ ok: false, error: { name: 'AigridError', code: 'ERR_UNKNOWN_MODEL', typed: true } });
    await page.close();
    await waitFor(async () => (await engineStatus()).tokensServed > 0, 5000, 'tokens served by the extension');
    await popup.waitForFunction(() => Number(document.getElementById('tokens')?.textContent) > 0);
    // The popup for the README (docs/extension-popup.png), serving and with tokens served.
    const dir = process.env.AIGRID_SCREENSHOT_DIR;
    if (dir) {
      mkdirSync(dir, { recursive: true });
      await (await popup.$('body'))!.screenshot({ path: join(dir, 'extension-popup.png') });
    }
  });

  it('a page whose origin the person refused gets a typed permission error', async () => {
    const page = await openSite(refusedSite);
    const first = await startInPage(page, (aigrid) => aigrid.models.list());
    await (await permissionPrompt(refusedSite.url)).click('#deny');
    expectDenied(await first.settle(), refusedSite.url);
    // Remembered: the next call fails at once, with no prompt.
    const again = await startInPage(page, (aigrid) => aigrid.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'user', content: 'hi' }], stream: true }));
    expectDenied(await again.settle(), refusedSite.url);

    // The options page lists both decisions; revoking one makes the next call ask again, and
    // closing that prompt without an answer refuses the call without remembering anything.
    const options = await chromium.openExtensionPage('options.html');
    await options.waitForSelector(`tr[data-origin="${refusedSite.url}"]`);
    const rows = await options.$$eval('#origins tbody tr', (trs) => trs.map((tr) => [(tr as HTMLElement).dataset.origin, (tr as HTMLTableRowElement).cells[1]!.textContent]));
    expect(rows).toEqual(expect.arrayContaining([[allowedSite.url, 'allowed'], [refusedSite.url, 'denied']]));
    await options.click(`tr[data-origin="${refusedSite.url}"] button.revoke`);
    await options.waitForFunction((origin) => !document.querySelector(`tr[data-origin="${origin}"]`), {}, refusedSite.url);
    await options.close();
    // Without a click or key press in the page, an undecided origin gets no prompt. The call
    // starts from the page's own load handler: puppeteer's evaluate counts as a user gesture.
    const untouched = await chromium.browser.newPage();
    await untouched.evaluateOnNewDocument(() => {
      window.addEventListener('load', () => {
        const w = window as unknown as ProviderWindow;
        w.pending = w.aigrid.models.list().then(
          (value) => ({ ok: true, value }),
          (err: Error & { code?: string }) => ({ ok: false, error: { name: err.name, code: err.code, message: err.message, typed: err instanceof w.aigrid.AigridError } }),
        );
      });
    });
    await untouched.goto(`${refusedSite.url}/`, { waitUntil: 'load' });
    await untouched.waitForFunction(() => (window as unknown as ProviderWindow).pending !== undefined);
    const quiet = await untouched.evaluate(() => (window as unknown as ProviderWindow).pending);
    expectDenied(quiet, refusedSite.url);
    expect((quiet as { error: { message: string } }).error.message).toMatch(/click or key press/);
    expect(promptOpen(refusedSite.url)).toBe(false);
    await untouched.close();
    // A page that goes away while its prompt is open takes the prompt with it (no decision, no wait).
    const leaving = await openSite(refusedSite);
    await startInPage(leaving, (aigrid) => aigrid.models.list());
    await permissionPrompt(refusedSite.url);
    await leaving.close();
    await waitFor(() => !promptOpen(refusedSite.url), 5000, 'the prompt withdrawn');
    const third = await startInPage(page, (aigrid) => aigrid.models.list());
    await (await permissionPrompt(refusedSite.url)).close();
    expectDenied(await third.settle(), refusedSite.url);
    // A closed prompt means "not now": the next call is refused at once, with no prompt.
    const fourth = await startInPage(page, (aigrid) => aigrid.models.list());
    const notNow = await fourth.settle();
    expectDenied(notNow, refusedSite.url);
    expect((notNow as { error: { message: string } }).error.message).toMatch(/closed its permission prompt/);
    expect(promptOpen(refusedSite.url)).toBe(false);
    expect((await extensionState()).settings.network).toBe(NETWORK);
    const worker = await chromium.worker();
    const stored = await worker.evaluate(() => chrome.storage.local.get(null));
    expect(Object.keys(stored).filter((k) => k.startsWith('origin:'))).toEqual([`origin:${allowedSite.url}`]);
    await page.close();
  });

  it('an abort in the page stops the generation and releases its sessions on every peer', async () => {
    const page = await openSite(allowedSite);
    const call = await startInPage(page, async (aigrid) => {
      const controller = new AbortController();
      const stream = await aigrid.completions.create({ model: 'tiny-llama', prompt: 'once upon a time', max_tokens: 200, temperature: 0, stop: null, stream: true }, { signal: controller.signal });
      let chunks = 0;
      try {
        for await (const _ of stream) if (++chunks === 3) controller.abort();
      } catch (err) {
        return { chunks, name: (err as Error).name, code: (err as { code?: string }).code };
      }
      return { chunks, finished: true };
    });
    const servedBefore = nodeContribution.tokensServed;
    const outcome = (await call.settle()) as { ok: boolean; value: { chunks: number; name?: string; code?: string } };
    expect(outcome.value).toEqual({ chunks: 3, name: 'AigridError', code: 'ERR_ABORTED' });
    const sessions = async () => nodeContribution.peer.sessionCount + (await engineStatus()).assignments.reduce((n, a) => n + a.sessions, 0);
    await waitFor(async () => (await sessions()) === 0, 5000, 'sessions released on the Node peer and the extension');
    const served = nodeContribution.tokensServed;
    await new Promise((r) => setTimeout(r, 300));
    expect(nodeContribution.tokensServed).toBe(served);
    expect(served - servedBefore).toBeLessThan(100); // far fewer than the 200 tokens asked for
    await page.close();
  });

  it('"contribute only when idle" holds contribution back while the person is active', async () => {
    const { peerId } = await engineStatus();
    await popup.click('#only-idle');
    // Headless Chromium reports the person active (no input device, never idle for 60 s here).
    expect((await extensionState()).idle).toBe('active');
    await popup.waitForFunction(() => document.getElementById('state')?.textContent === 'waiting until idle');
    await waitFor(async () => (await networkView()).peers.every((p) => p.peerId !== peerId), 10_000, 'the contribution paused');
    expect(await extensionState()).toMatchObject({ waiting: 'idle', settings: { onlyWhenIdle: true }, engine: { state: 'off', assignments: [] } });
    await popup.click('#only-idle');
    await waitFor(async () => (await networkView()).models[0]?.ready.every((r) => r === 1) ?? false, 30_000, 'every layer ready again');
    const after = await extensionState();
    expect(after).toMatchObject({ waiting: null, settings: { onlyWhenIdle: false }, engine: { state: 'contributing' } });
    expect(after.engine!.peerId).toBe(peerId); // a new contribution, as the same identity
  });

  it('contribution resumes when the browser restarts (state kept in chrome.storage)', async () => {
    const before = (await engineStatus()).peerId;
    await chromium.close({ keepProfile: true });
    await waitFor(async () => (await networkView()).peers.every((p) => p.peerId !== before), 10_000, 'the old peer gone');
    chromium = await launchWithExtension(chromium.profile);
    await waitFor(async () => (await networkView()).models[0]?.ready.every((r) => r === 1) ?? false, 30_000, 'every layer ready again');
    const after = await engineStatus();
    expect(after).toMatchObject({ state: 'contributing', network: NETWORK, signalUrl: net.server.wsUrl });
    // The extension's identity (a key in its IndexedDB) survives the restart.
    expect(after.peerId).toBe(before);
    expect(after.assignments[0]?.state).toBe('ready');
  });

  it('turning contribution off releases the extension\'s layers', async () => {
    popup = await chromium.openExtensionPage('popup.html');
    await popup.waitForSelector('#assignments tbody tr[data-state="ready"]');
    const { peerId, assignments } = await engineStatus();
    await popup.click('#enabled');
    await waitFor(async () => (await networkView()).peers.every((p) => p.peerId !== peerId), 10_000, 'the extension\'s peer gone from the directory');
    const { start, end } = assignments[0]!;
    await waitFor(async () => {
      const coverage = (await networkView()).models[0]!;
      return coverage.assigned.slice(start, end).every((a) => a === 0);
    }, 10_000, 'its layers unassigned');
    expect((await engineStatus()).state).toBe('off');
    expect((await engineStatus()).assignments).toEqual([]);
    await popup.waitForFunction(() => document.getElementById('state')?.textContent === 'off' && !document.getElementById('no-assignment')?.hidden);
    expect((await extensionState()).enabled).toBe(false);
  });
});
