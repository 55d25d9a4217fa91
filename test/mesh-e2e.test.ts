// End to end: a signaling server, three Chromium pages and one Node peer form a mesh and move
// seeded binary frames across every pair, checked by SHA-256 per frame; then peers that close,
// crash or hang are seen leaving by every other peer within the heartbeat bound.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mesh, detectCapabilities } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { launchChromium, openPage, type TestBrowser } from './helpers/chromium.ts';
import { TRAFFIC_SOURCE, traffic, type TrafficState } from './helpers/traffic.ts';
import { waitFor } from './helpers/wait.ts';
import { idOf, writeKeyFile } from './helpers/identities.ts';

const HEARTBEAT_MS = 1000;
/** A dead peer is dropped after at most two heartbeats; the rest is delivery slack. */
const LEAVE_BOUND_MS = 2 * HEARTBEAT_MS + 1500;
const BYTES_PER_DIRECTION = 4 * 1024 * 1024; // 8 MiB across each pair, both directions together
const NETWORK = 'e2e';
const APP_DIR = fileURLToPath(new URL('../dist/app', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/aigrid.js', import.meta.url));

let server: SignalingServer;
let chromium: TestBrowser;
const pages: { page: Page; errors: string[]; peerId: string }[] = [];
let nodeMesh: Mesh;
let nodeTraffic: TrafficState;
const children: ChildProcess[] = [];

async function pagePeers(page: Page): Promise<string[]> {
  return page.evaluate(() => window.aigridApp.mesh!.peers().map((p) => p.peerId));
}

async function pageLinks(page: Page): Promise<string[]> {
  return page.evaluate(() => window.aigridApp.mesh!.connectedPeers());
}

/** Records, in each page and in the Node mesh, when each peer was announced leaving. */
async function trackLeaves(): Promise<() => Promise<Record<string, number>[]>> {
  for (const { page } of pages) {
    await page.evaluate(() => {
      const w = window as unknown as { leaves: Record<string, number> };
      w.leaves = {};
      window.aigridApp.mesh!.signaling.on('leave', (id) => (w.leaves[id] = Date.now()));
    });
  }
  const nodeLeaves: Record<string, number> = {};
  nodeMesh.signaling.on('leave', (id) => (nodeLeaves[id] = Date.now()));
  return async () => [
    ...(await Promise.all(pages.map(({ page }) => page.evaluate(() => (window as unknown as { leaves: Record<string, number> }).leaves)))),
    nodeLeaves,
  ];
}

function spawnCliPeer(name: string): Promise<ChildProcess> {
  const id = idOf(name);
  const keyFile = writeKeyFile(join(mkdtempSync(join(tmpdir(), 'aigrid-key-')), 'peer.key'), name);
  const child = spawn(process.execPath, [BIN, 'peer', '--signal', server.wsUrl, '--network', NETWORK, '--identity', keyFile], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(`joined network ${NETWORK} as ${id}`)) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`peer exited early (${code}): ${out}`)));
  });
}

beforeAll(async () => {
  server = await startSignalingServer({ staticDir: APP_DIR, heartbeatMs: HEARTBEAT_MS });
  chromium = await launchChromium();
  for (let i = 0; i < 3; i++) {
    const { page, errors } = await openPage(chromium.browser, `${server.httpUrl}/`);
    const peerId = await page.evaluate(async (network) => (await window.aigridApp.join({ network })).peerId, NETWORK);
    await page.addScriptTag({ content: TRAFFIC_SOURCE });
    await page.evaluate(() => {
      const g = globalThis as unknown as { aigridTraffic: { listen(m: unknown): unknown }; trafficState: unknown };
      g.trafficState = g.aigridTraffic.listen(window.aigridApp.mesh);
    });
    pages.push({ page, errors, peerId });
  }
  nodeMesh = new Mesh({
    ...nodePlatform(),
    signal: server.wsUrl,
    network: NETWORK,
    capabilities: await detectCapabilities({ kind: 'node', memoryBudgetMB: 512 }),
  });
  nodeTraffic = traffic.listen(nodeMesh);
  await nodeMesh.start();
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  nodeMesh?.close();
  await chromium?.close();
  await server?.close();
});

describe('mesh of 3 Chromium pages and 1 Node peer', () => {
  it('connects every pair over WebRTC', async () => {
    const all = [...pages.map((p) => p.peerId), nodeMesh.peerId];
    await waitFor(async () => {
      for (const { page, peerId } of pages) {
        const links = await pageLinks(page);
        if (links.length !== 3 || !all.filter((id) => id !== peerId).every((id) => links.includes(id))) return false;
      }
      return nodeMesh.connectedPeers().length === 3;
    }, 30_000, 'every peer linked to the 3 others');
    // The page shows the peers it sees.
    const rows = await pages[0]!.page.$$eval('#peers tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.peerId));
    expect(rows.sort()).toEqual(all.filter((id) => id !== pages[0]!.peerId).sort());
  });

  it('moves 8 MiB across every pair, byte-exact, with frames larger than the max message size', async () => {
    const ids = [...pages.map((p) => p.peerId), nodeMesh.peerId];
    const sends = [
      ...pages.map(({ page, peerId }) =>
        page.evaluate(
          async (targets, total) => {
            const t = (globalThis as unknown as { aigridTraffic: { send(m: unknown, to: string, n: number): Promise<unknown> } }).aigridTraffic;
            const out: Record<string, unknown> = {};
            await Promise.all(targets.map(async (to) => (out[to] = await t.send(window.aigridApp.mesh, to, total))));
            return out as Record<string, { bytes: number; digests: string[] }>;
          },
          ids.filter((id) => id !== peerId),
          BYTES_PER_DIRECTION,
        ),
      ),
      (async () => {
        const out: Record<string, { bytes: number; digests: string[] }> = {};
        await Promise.all(
          ids.filter((id) => id !== nodeMesh.peerId).map(async (to) => (out[to] = await traffic.send(nodeMesh, to, BYTES_PER_DIRECTION))),
        );
        return out;
      })(),
    ];
    const sent = await Promise.all(sends);
    const received = async () => [
      ...(await Promise.all(
        pages.map(({ page }) =>
          page.evaluate(() => {
            const g = globalThis as unknown as { aigridTraffic: { settle(s: unknown): Promise<unknown> }; trafficState: unknown };
            return g.aigridTraffic.settle(g.trafficState) as Promise<{ bytes: Record<string, number>; digests: Record<string, string[]> }>;
          }),
        ),
      )),
      await traffic.settle(nodeTraffic),
    ];
    await waitFor(async () => (await received()).every((r) => Object.values(r.bytes).filter((b) => b === BYTES_PER_DIRECTION).length === 3), 60_000, 'all bytes received');
    const got = await received();
    for (let s = 0; s < ids.length; s++) {
      for (let r = 0; r < ids.length; r++) {
        if (s === r) continue;
        const out = sent[s]![ids[r]!]!;
        expect(out.bytes).toBe(BYTES_PER_DIRECTION);
        expect(got[r]!.bytes[ids[s]!]).toBe(BYTES_PER_DIRECTION);
        expect(got[r]!.digests[ids[s]!]).toEqual(out.digests);
      }
    }
    for (const { errors } of pages) expect(errors).toEqual([]);
  });

  it('sees a killed, a hung and a closed peer leave, each within the heartbeat bound', async () => {
    const killed = await spawnCliPeer('cli-killed');
    const hung = await spawnCliPeer('cli-hung');
    const [KILLED, HUNG] = [idOf('cli-killed'), idOf('cli-hung')];
    await waitFor(async () => {
      for (const { page } of pages) {
        const seen = await pagePeers(page);
        if (!seen.includes(KILLED) || !seen.includes(HUNG)) return false;
      }
      return nodeMesh.peers().some((p) => p.peerId === HUNG);
    }, 20_000, 'CLI peers visible to everyone');
    const leaves = await trackLeaves();

    const t0 = Date.now();
    killed.kill('SIGKILL');
    hung.kill('SIGSTOP'); // the socket stays open; only the heartbeat can tell
    await waitFor(async () => (await leaves()).every((l) => KILLED in l && HUNG in l), 10_000, 'both CLI peers announced gone');
    for (const seen of await leaves()) {
      expect(seen[KILLED]! - t0).toBeLessThanOrEqual(LEAVE_BOUND_MS);
      expect(seen[HUNG]! - t0).toBeLessThanOrEqual(LEAVE_BOUND_MS);
    }
    hung.kill('SIGKILL');

    const closing = pages.pop()!;
    const t1 = Date.now();
    await closing.page.close();
    await waitFor(async () => (await leaves()).every((l) => closing.peerId in l), 10_000, 'closed page announced gone');
    for (const seen of await leaves()) expect(seen[closing.peerId]! - t1).toBeLessThanOrEqual(LEAVE_BOUND_MS);
    // Links to the page that left are torn down too.
    await waitFor(async () => !nodeMesh.connectedPeers().includes(closing.peerId), 10_000, 'link to the closed page dropped');
    for (const { page } of pages) expect(await pageLinks(page)).not.toContain(closing.peerId);
  });
});
