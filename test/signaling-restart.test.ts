// A signaling server killed (SIGKILL) mid-generation and started again on its data folder: the
// generation in flight completes on the data plane, the restarted server comes back with the
// model, its placement and the network's owner, peers keep their WebRTC links and their loaded
// layers, and a new generation gets a route without anyone serving the model again.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridPeer, modelSpecFromConfig, RemoteChain, signalingRoutes, type ServingStatus } from '../client/grid/index.ts';
import { Mesh } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openModelNode } from '../client/model/checkpoint/node.ts';
import { Head } from '../client/model/head.ts';
import { readConfig } from '../client/model/shard.ts';
import type { ModelCoverage, ModelSpec } from '../protocol/index.ts';
import { FIXTURE_DIR, fixtures } from './fixtures/index.ts';
import { CAPABILITIES } from './helpers/grid-net.ts';
import { testIdentity } from './helpers/identities.ts';
import { openFixture } from './helpers/model-runtime.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { waitFor } from './helpers/wait.ts';

const BIN = fileURLToPath(new URL('../bin/aigrid.js', import.meta.url));
const NETWORK = 'restarted';
const MB = 1024 * 1024;

let dataDir: string;
let port: number;
let server: ChildProcess | undefined;
let files: RangeServer;
let head: Head;
const meshes: Mesh[] = [];
const peers: GridPeer[] = [];

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port: p } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return p;
}

/** `aigrid signal` on the fixed port and data folder; resolves once it answers /healthz. */
async function startServer(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'signal', '--port', String(port), '--data', dataDir, '--heartbeat-ms', '1000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)), 20_000, 'the server up').catch((err: Error) => {
    throw new Error(`${err.message}; its output: ${output.slice(-2000)}`);
  });
  return child;
}

async function joinMesh(peerId: string, memoryBudgetMB: number): Promise<Mesh> {
  const capabilities = { ...CAPABILITIES, memoryBudgetMB };
  const mesh = new Mesh({ ...nodePlatform(), signal: `ws://127.0.0.1:${port}/signal`, network: NETWORK, capabilities, autoConnect: false, maxConnections: 16, identity: testIdentity(peerId) });
  meshes.push(mesh);
  await mesh.start();
  return mesh;
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'aigrid-restart-'));
  port = await freePort();
  files = await startRangeServer(FIXTURE_DIR);
  server = await startServer();
  head = await Head.load(await openFixture('tiny-llama'), { backend: 'cpu' });
});

afterAll(async () => {
  for (const p of peers) p.close();
  for (const m of meshes) m.close();
  head?.destroy();
  server?.kill('SIGKILL');
  await files?.close();
  await rm(dataDir, { recursive: true, force: true });
});

describe('a signaling server restarted on its data folder', () => {
  it('loses nothing: the generation in flight completes, links and layers stay, routes work without a re-serve', async () => {
    // Two peers with room for two of tiny-llama's four layers each: the model is split.
    for (const id of ['restart-peer-a', 'restart-peer-b']) {
      peers.push(new GridPeer({ mesh: await joinMesh(id, 2), backend: 'cpu', open: checkpointOpener(openModelNode, { cache: false }) }));
    }
    const client = await joinMesh("restart-client", 0);
    const config = readConfig(await openFixture('tiny-llama'));
    const spec: ModelSpec = { modelId: 'tiny-llama', source: `${files.url}/tiny-llama`, numLayers: config.numLayers, hiddenSize: config.hiddenSize, layerBytes: Math.max(MB, modelSpecFromConfig(config, { source: 'x' }).layerBytes), weightDtype: 'f32', replication: 1 };
    let coverage: ModelCoverage | undefined;
    client.signaling.on('models', (models) => (coverage = models.find((m) => m.model.modelId === spec.modelId)));
    client.signaling.send({ type: 'serve', model: spec });
    await waitFor(() => Boolean(coverage?.ready.every((r) => r >= 1)), 30_000, 'the model ready');
    const before = (await (await fetch(`http://127.0.0.1:${port}/api/networks/${NETWORK}`)).json()) as { owner: string };
    expect(before.owner).toBe(peers[0]!.peerId); // the network's first peer

    // Whatever happens from here on, no link drops and no peer loads anything again.
    const dropped: string[] = [];
    for (const m of meshes) m.on('disconnect', (peerId: string) => dropped.push(`${m.peerId} lost ${peerId}`));
    const reloads: ServingStatus[] = [];
    for (const p of peers) p.on('status', (s: ServingStatus) => s.state !== 'ready' && reloads.push(s));

    const chain = new RemoteChain({ mesh: client, modelId: spec.modelId, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, routes: signalingRoutes(client.signaling, spec.modelId) });
    const model = (await fixtures()).models.find((m) => m.name === 'tiny-llama')!;
    const g = model.golden[2]!;
    let killed = false;
    let restarted: Promise<ChildProcess> | undefined;
    const result = await chain.generate(head, g.ids, {
      maxTokens: g.greedy.length,
      temperature: 0,
      sessionId: 'across-restart',
      onToken: (_t, step) => {
        if (step !== 3 || killed) return;
        killed = true;
        server!.kill('SIGKILL');
        restarted = new Promise((resolve) => server!.once('exit', resolve)).then(() => startServer());
      },
    });
    expect(killed).toBe(true);
    expect(result.tokens).toEqual(g.greedy);
    server = await restarted!;

    // Back with the model: the peers report ready again on their own, and no one serves it.
    coverage = undefined;
    await waitFor(() => Boolean(coverage?.ready.every((r) => r >= 1)), 30_000, 'the model ready after the restart');
    const after = (await (await fetch(`http://127.0.0.1:${port}/api/networks/${NETWORK}`)).json()) as typeof before;
    expect(after.owner).toBe(before.owner);
    const g2 = model.golden[1]!;
    const again = await chain.generate(head, g2.ids, { maxTokens: g2.greedy.length, temperature: 0, sessionId: 'after-restart' });
    expect(again.tokens).toEqual(g2.greedy);
    expect(dropped).toEqual([]);
    expect(reloads).toEqual([]);
    chain.close();
  });
});
