// npm run bench:mesh — data-channel throughput and round trips for page<->page, page<->Node and
// Node<->Node, and the signaling relay latency, all in one run on this machine.
// Ends with one line: RESULT {json}.
import { fileURLToPath } from 'node:url';
import type { Page } from 'puppeteer-core';
import { Mesh, SignalingClient, detectCapabilities } from '../../client/mesh/index.ts';
import { nodePlatform } from '../../client/mesh/node.ts';
import { ephemeralIdentity } from '../../protocol/index.ts';
import { startSignalingServer } from '../../signaling/server.ts';
import { launchChromium, openPage } from '../helpers/chromium.ts';
import { TRAFFIC_SOURCE, traffic } from '../helpers/traffic.ts';

const TOTAL_BYTES = 64 * 1024 * 1024;
const FRAME_BYTES = 1024 * 1024;
const ROUND_TRIPS = 400;
const RELAYS = 400;
const NETWORK = 'bench';

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const round = (x: number, digits = 2) => Number(x.toFixed(digits));

async function pageCall<T>(page: Page, expression: string): Promise<T> {
  return page.evaluate(expression) as Promise<T>;
}

async function relayLatencies(wsUrl: string): Promise<number[]> {
  const capabilities = await detectCapabilities({ kind: 'node', memoryBudgetMB: 0 });
  const { WebSocket } = nodePlatform();
  const make = () => new SignalingClient({ url: wsUrl, network: 'relay', identity: ephemeralIdentity(), capabilities, WebSocket });
  const a = make();
  const b = make();
  await a.start();
  await b.start();
  const samples: number[] = [];
  for (let i = 0; i < RELAYS; i++) {
    const got = new Promise<void>((resolve) => b.once('signal', () => resolve()));
    const t0 = performance.now();
    a.sendSignal(b.peerId, { type: 'candidate', candidate: { candidate: `candidate:${i} 1 udp 1 127.0.0.1 9 typ host`, sdpMid: '0' } });
    await got;
    samples.push(performance.now() - t0);
  }
  a.close();
  b.close();
  return samples.sort((x, y) => x - y);
}

async function main(): Promise<void> {
  const appDir = fileURLToPath(new URL('../../dist/app', import.meta.url));
  const server = await startSignalingServer({ staticDir: appDir, messagesPerSecond: 100_000 });
  const chromium = await launchChromium();
  const nodeMeshes: Mesh[] = [];
  try {
    const pages: { page: Page; peerId: string }[] = [];
    for (let i = 0; i < 2; i++) {
      const { page } = await openPage(chromium.browser, `${server.httpUrl}/`);
      const peerId = await pageCall<string>(page, `window.aigridApp.join({ network: '${NETWORK}' }).then((m) => m.peerId)`);
      await page.addScriptTag({ content: TRAFFIC_SOURCE });
      pages.push({ page, peerId });
    }
    const capabilities = await detectCapabilities({ kind: 'node', memoryBudgetMB: 0 });
    for (let i = 0; i < 2; i++) {
      const mesh = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network: NETWORK, capabilities });
      await mesh.start();
      nodeMeshes.push(mesh);
    }
    const [p1, p2] = pages as [{ page: Page; peerId: string }, { page: Page; peerId: string }];
    const [n1, n2] = nodeMeshes as [Mesh, Mesh];
    const inPage = (page: Page, call: string) => pageCall<number | number[]>(page, `aigridTraffic.${call.replace('MESH', 'window.aigridApp.mesh')}`);

    const rows: Record<string, { MiBps: number; rttP50Ms: number; rttP99Ms: number }> = {};
    const pairs: [string, () => Promise<number>, () => Promise<number[]>][] = [
      ['page<->page', () => inPage(p1.page, `throughput(MESH, '${p2.peerId}', ${TOTAL_BYTES}, ${FRAME_BYTES})`) as Promise<number>,
        () => inPage(p1.page, `roundTrips(MESH, '${p2.peerId}', ${ROUND_TRIPS})`) as Promise<number[]>],
      ['page<->node', () => inPage(p1.page, `throughput(MESH, '${n1.peerId}', ${TOTAL_BYTES}, ${FRAME_BYTES})`) as Promise<number>,
        () => inPage(p1.page, `roundTrips(MESH, '${n1.peerId}', ${ROUND_TRIPS})`) as Promise<number[]>],
      ['node<->node', () => traffic.throughput(n1, n2.peerId, TOTAL_BYTES, FRAME_BYTES),
        () => traffic.roundTrips(n1, n2.peerId, ROUND_TRIPS)],
    ];
    for (const [name, throughput, trips] of pairs) {
      await throughput(); // warm-up: connection set-up, JIT
      const mibps = await throughput();
      const samples = await trips();
      rows[name] = { MiBps: round(mibps, 1), rttP50Ms: round(quantile(samples, 0.5), 3), rttP99Ms: round(quantile(samples, 0.99), 3) };
    }
    const relay = await relayLatencies(server.wsUrl);
    const relayP50Ms = round(quantile(relay, 0.5), 3);

    console.log(`${TOTAL_BYTES / 1048576} MiB in ${FRAME_BYTES / 1048576} MiB frames per run; ${ROUND_TRIPS} round trips; ${RELAYS} relays`);
    console.table(rows);
    console.log(`signaling relay p50 ${relayP50Ms} ms, p99 ${round(quantile(relay, 0.99), 3)} ms`);
    const pagePair = rows['page<->page']!;
    const pageNode = rows['page<->node']!;
    console.log(`ratio page<->node / page<->page throughput: ${round(pageNode.MiBps / pagePair.MiBps)}`);
    const result = {
      pagePairMiBps: pagePair.MiBps,
      pageNodeMiBps: pageNode.MiBps,
      nodePairMiBps: rows['node<->node']!.MiBps,
      rttP50Ms: pagePair.rttP50Ms,
      rttP99Ms: pagePair.rttP99Ms,
      relayP50Ms,
    };
    console.log(`RESULT ${JSON.stringify(result)}`);
  } finally {
    for (const mesh of nodeMeshes) mesh.close();
    await chromium.close();
    await server.close();
  }
}

await main();
