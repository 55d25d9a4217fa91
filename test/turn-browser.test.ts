// A generation served through a TURN relay: the signaling server forces relay-only ICE and hands
// out coturn credentials; a Chromium page (the page SDK, /sdk.js) and a Node peer each hold half of
// tiny-llama, and a Node client gets the golden tokens through them. Every link, on the Node side
// and in the page, runs over a relay candidate pair.
import { fileURLToPath } from 'node:url';
import type { Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Mesh } from '../client/mesh/index.ts';
import { connect, type Contribution, type Grid, type ModelSpec } from '../client/sdk/node.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { launchChromium, openPage, type TestBrowser } from './helpers/chromium.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { startTurnServer, type TurnServer } from './helpers/turn-server.ts';
import { waitFor } from './helpers/wait.ts';
import { FIXTURE_DIR, fixtures } from './fixtures/index.ts';

const APP_DIR = fileURLToPath(new URL('../dist/app', import.meta.url));
const NETWORK = 'relayed';
const MB = 1024 * 1024;

let turn: TurnServer;
let server: SignalingServer;
let files: RangeServer;
let chromium: TestBrowser;
let client: Grid;
let nodePeer: Grid;
let contribution: Contribution;
let page: Page;
let pageErrors: string[];
const serverLog: string[] = [];

/** The candidate types of every open link of a mesh. */
async function linkTypes(mesh: Mesh): Promise<{ local: string; remote: string }[]> {
  return Promise.all(mesh.connectedPeers().map(async (id) => (await mesh.link(id)!.candidateTypes()) ?? { local: '?', remote: '?' }));
}

beforeAll(async () => {
  await fixtures();
  turn = await startTurnServer();
  server = await startSignalingServer({ staticDir: APP_DIR, heartbeatMs: 2000, ice: { servers: [turn.udpUrl], turnSecret: turn.secret, relayOnly: true }, log: (line) => serverLog.push(line) });
  files = await startRangeServer(FIXTURE_DIR);
  chromium = await launchChromium();
  ({ page, errors: pageErrors } = await openPage(chromium.browser, `${server.httpUrl}/blank-for-sdk`));
  // A string, so the test runner's transform leaves the page's dynamic import alone.
  await page.evaluate(`(async () => {
    const { connect } = await import('/sdk.js');
    const grid = await connect({ signal: ${JSON.stringify(server.wsUrl)}, network: ${JSON.stringify(NETWORK)} });
    window.contribution = await grid.contribute({ memoryBudgetMB: 2 });
  })()`);
  nodePeer = await connect({ signal: server.wsUrl, network: NETWORK });
  contribution = await nodePeer.contribute({ memoryBudgetMB: 2, backend: 'cpu' });
  client = await connect({ signal: server.wsUrl, network: NETWORK });
  // One MB per layer: the page and the Node peer (2 MB each) hold half of the model each.
  const spec: ModelSpec = { modelId: 'tiny-llama', source: `${files.url}/tiny-llama`, numLayers: 4, hiddenSize: 64, layerBytes: MB, weightDtype: 'f32', replication: 1 };
  await client.serve(spec);
  try {
    await waitFor(async () => (await client.models.list()).data[0]?.health === 'ready', 60_000, 'tiny-llama ready on the page and the Node peer');
  } catch (err) {
    // What each side was doing, so that a failure elsewhere can be read from its log.
    const pageStatus = await page.evaluate(() => JSON.stringify((window as unknown as { contribution?: { status(): unknown } }).contribution?.status())).catch((e: unknown) => String(e));
    const seen = [
      `models: ${JSON.stringify((await client.models.list()).data)}`,
      `page peer status: ${pageStatus}`,
      `node peer status: ${JSON.stringify(contribution.status())}`,
      `page errors: ${JSON.stringify(pageErrors)}`,
      `server log:\n${serverLog.slice(-40).join('\n')}`,
      `turn log:\n${turn.log().slice(-2000)}`,
    ];
    throw new Error(`${(err as Error).message}\n${seen.join('\n')}`);
  }
}, 120_000);

afterAll(async () => {
  client?.close();
  nodePeer?.close();
  await chromium?.close();
  await files?.close();
  await server?.close();
  await turn?.close();
});

describe('a generation through a TURN relay', () => {
  it('a page and a Node peer serve tiny-llama over relay-only links to the golden tokens', async () => {
    const pagePeer = await page.evaluate(() => (window as unknown as { contribution: { peerId: string } }).contribution.peerId);
    const model = (await fixtures()).models.find((m) => m.name === 'tiny-llama')!;
    for (const g of model.golden.slice(0, 2)) {
      const out = await client.generate({ model: 'tiny-llama', prompt: g.ids, maxTokens: g.greedy.length, temperature: 0, stopTokens: [] });
      expect(out.tokens).toEqual(g.greedy);
      expect(out.aigrid.route.map((h) => h.peerId).sort()).toEqual([pagePeer, contribution.peerId].sort());
    }
    // Every link the generation used is relayed on both ends: the Node client's, the Node peer's...
    const nodeLinks = [...(await linkTypes(client.mesh)), ...(await linkTypes(contribution.peer.mesh))];
    expect(nodeLinks.length).toBeGreaterThanOrEqual(2);
    expect(nodeLinks).toEqual(nodeLinks.map(() => ({ local: 'relay', remote: 'relay' })));
    // ...and the page's, as Chromium reports them.
    const pageLinks = await page.evaluate(async () => {
      const mesh = (window as unknown as { contribution: { peer: { mesh: Mesh } } }).contribution.peer.mesh;
      return Promise.all(mesh.connectedPeers().map(async (id) => (await mesh.link(id)!.candidateTypes()) ?? { local: '?', remote: '?' }));
    });
    expect(pageLinks.length).toBeGreaterThanOrEqual(1);
    expect(pageLinks).toEqual(pageLinks.map(() => ({ local: 'relay', remote: 'relay' })));
    expect(turn.log()).toMatch(/ALLOCATE processed, success/);
    expect(pageErrors.filter((e) => !/Failed to load resource: .* 404/.test(e))).toEqual([]);
  });
});
