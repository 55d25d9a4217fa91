// The SDK in Node generating against a grid of Chromium pages: two pages contribute through the
// page SDK (/sdk.js) with room for half of tiny-llama each, the Node SDK serves the model to the
// network and gets the golden tokens through them; aborting a stream stops the work on both pages.
// Then a vDAG whose LLM node (served by those pages) feeds an embedding node (a pipeline block on a
// third page, run by onnxruntime-web's WebAssembly build, and on a Node peer) runs from the Node
// SDK, streamed, and gives the float64 reference's embedding of the generated text, from either
// replica.
import { fileURLToPath } from 'node:url';
import type { Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Grid, type ModelSpec } from '../client/sdk/node.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { launchChromium, openPage, type TestBrowser } from './helpers/chromium.ts';
import { failure } from './helpers/model-runtime.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { waitFor } from './helpers/wait.ts';
import { FIXTURE_DIR, fixtures } from './fixtures/index.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bertFixture, writeBertFixtures } from './fixtures/onnx-bert.ts';
import { bertEncode, bertHiddenStates, meanPooledEmbedding, widen } from './fixtures/bert-reference.ts';
import type { Contribution } from '../client/sdk/node.ts';

const APP_DIR = fileURLToPath(new URL('../dist/app', import.meta.url));
const NETWORK = 'browser-served';
const MB = 1024 * 1024;

let server: SignalingServer;
let files: RangeServer;
let chromium: TestBrowser;
let sdk: Grid;
const pages: Page[] = [];

/** A page that contributes `memoryBudgetMB` through the page SDK; resolves with its serving peer id. */
async function contributingPage(memoryBudgetMB = 2): Promise<Page> {
  const { page } = await openPage(chromium.browser, `${server.httpUrl}/blank-for-sdk`);
  pages.push(page);
  // A string, so the test runner's transform leaves the page's dynamic import alone.
  await page.evaluate(`(async () => {
    const { connect } = await import('/sdk.js');
    const grid = await connect({ signal: ${JSON.stringify(server.wsUrl)}, network: ${JSON.stringify(NETWORK)} });
    window.contribution = await grid.contribute({ memoryBudgetMB: ${memoryBudgetMB} });
  })()`);
  return page;
}

/** What a page's contribution reports: its peer, what it serves, and the sessions open on it. */
const served = (page: Page) =>
  page.evaluate(() => {
    const c = (window as unknown as { contribution: { peerId: string; tokensServed: number; peer: { sessionCount: number }; status(): { start: number; end: number; state: string }[] } }).contribution;
    return { peerId: c.peerId, tokens: c.tokensServed, sessions: c.peer.sessionCount, status: c.status() };
  });

beforeAll(async () => {
  await fixtures();
  server = await startSignalingServer({ staticDir: APP_DIR, heartbeatMs: 2000 });
  files = await startRangeServer(FIXTURE_DIR);
  chromium = await launchChromium();
  await Promise.all([contributingPage(), contributingPage()]);
  sdk = await connect({ signal: server.wsUrl, network: NETWORK });
  // One MB per layer: each page (2 MB) holds half of the model, so the route needs both.
  const spec: ModelSpec = { modelId: 'tiny-llama', source: `${files.url}/tiny-llama`, numLayers: 4, hiddenSize: 64, layerBytes: MB, weightDtype: 'f32', replication: 1 };
  await sdk.serve(spec);
  await waitFor(async () => (await sdk.models.list()).data[0]?.health === 'ready', 60_000, 'tiny-llama ready on the pages');
}, 120_000);

afterAll(async () => {
  sdk?.close();
  await chromium?.close();
  await files?.close();
  await server?.close();
});

describe('the Node SDK over Chromium peers', () => {
  it('generates the golden tokens through two pages', async () => {
    const held = await Promise.all(pages.map(served));
    expect(held.map((h) => h.status.map((s) => [s.start, s.end, s.state])).sort()).toEqual([[[0, 2, 'ready']], [[2, 4, 'ready']]]);
    const model = (await fixtures()).models.find((m) => m.name === 'tiny-llama')!;
    for (const g of model.golden.slice(0, 2)) {
      const out = await sdk.generate({ model: 'tiny-llama', prompt: g.ids, maxTokens: g.greedy.length, temperature: 0, stopTokens: [] });
      expect(out.tokens).toEqual(g.greedy);
      expect(out.aigrid.route.map((h) => h.peerId).sort()).toEqual(held.map((h) => h.peerId).sort());
    }
  });

  it('stops the work on every page when a stream is aborted', async () => {
    const controller = new AbortController();
    const stream = await sdk.completions.create({ model: 'tiny-llama', prompt: 'once upon a time', max_tokens: 120, temperature: 0, stop: null, stream: true }, { signal: controller.signal });
    let chunks = 0;
    const consumed = (async () => {
      for await (const _ of stream) if (++chunks === 3) controller.abort();
    })();
    await failure(consumed, 'ERR_ABORTED');
    await waitFor(async () => (await Promise.all(pages.map(served))).every((s) => s.sessions === 0), 10_000, 'sessions released on both pages');
    const before = (await Promise.all(pages.map(served))).map((s) => s.tokens);
    await new Promise((r) => setTimeout(r, 500));
    const after = (await Promise.all(pages.map(served))).map((s) => s.tokens);
    expect(after).toEqual(before);
    // The first page ran the prompt and the few tokens before the abort, far from the 120 asked for.
    expect(Math.max(...after)).toBeLessThan(100);
  });
});

describe('a vDAG over Chromium and Node peers: an LLM node feeds an embedding node', () => {
  const TEXT = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] };
  const fixture = bertFixture();
  const reference = (text: string) => {
    const { ids, typeIds } = bertEncode(fixture.vocab, text);
    return [...meanPooledEmbedding(bertHiddenStates(fixture.config, widen(fixture.weights), ids, typeIds))];
  };
  const maxDiff = (a: readonly number[], b: readonly number[]) => (a.length !== b.length ? Infinity : Math.max(...a.map((v, i) => Math.abs(v - b[i]!))));
  let dir: string;
  let bertFiles: RangeServer;
  let nodePeer: Grid;
  let nodeContribution: Contribution;
  let embedPage: Page;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aigrid-browser-bert-'));
    await writeBertFixtures(dir);
    bertFiles = await startRangeServer(dir);
    // Room for the block on a third page and on a Node peer; the LLM pages are full.
    embedPage = await contributingPage(64);
    nodePeer = await connect({ signal: server.wsUrl, network: NETWORK });
    nodeContribution = await nodePeer.contribute({ memoryBudgetMB: 64, backend: 'cpu' });
    await sdk.blocks.create({ uri: 'llm.tiny:1', model: { kind: 'llm', modelId: 'tiny-llama' }, inputSchema: TEXT, outputSchema: TEXT });
    await sdk.blocks.create({ uri: 'embedding.bert:1', model: { kind: 'pipeline', task: 'feature-extraction', model: `${bertFiles.url}/bert-embed`, memoryMB: 1 }, minReplicas: 2, inputSchema: TEXT, outputSchema: { type: 'object' } });
    await waitFor(async () => (await sdk.models.list()).data.find((m) => m.id === 'block/embedding.bert/1')?.coverage.ready[0] === 2, 90_000, 'the embedding block ready on the page and the Node peer');
  }, 120_000);

  afterAll(async () => {
    nodeContribution?.stop();
    nodePeer?.close();
    await bertFiles?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('runs end to end, streamed, and either replica gives the reference embedding', async () => {
    const page = await served(embedPage);
    // (It may also hold a spare copy of some tiny-llama layers.)
    expect(page.status).toContainEqual(expect.objectContaining({ modelId: 'block/embedding.bert/1', start: 0, end: 1, state: 'ready' }));
    expect(nodeContribution.status()).toContainEqual(expect.objectContaining({ modelId: 'block/embedding.bert/1', state: 'ready' }));

    await sdk.vdags.create({ id: 'story-vector', nodes: [{ id: 'story', block: 'llm.tiny:1' }, { id: 'vector', block: 'embedding.bert:1' }], connections: [{ from: 'story', to: 'vector' }], input: 'story', output: 'vector' });
    const streamed: string[] = [];
    const run = await sdk.vdags.run('story-vector', { text: 'once upon a time', maxTokens: 12 }, { onEvent: (e) => e.type === 'token' && streamed.push(e.text) });
    const { text } = run.outputs.story as { text: string };
    expect(streamed.length).toBeGreaterThan(1);
    expect(streamed.join('')).toBe(text);
    expect(maxDiff((run.output as { embedding: number[] }).embedding, reference(text))).toBeLessThan(1e-5);

    // The page's replica alone (onnxruntime-web, WebAssembly) once the Node peer has left.
    nodeContribution.stop();
    const fromPage = await sdk.embeddings.create({ model: 'embedding.bert:1', input: [text, 'the cat sat.'] });
    expect(fromPage.aigrid.peerId).toBe(page.peerId);
    expect(maxDiff(fromPage.data[0]!.embedding as number[], reference(text))).toBeLessThan(1e-5);
    expect(maxDiff(fromPage.data[1]!.embedding as number[], reference('the cat sat.'))).toBeLessThan(1e-5);
  });
});
