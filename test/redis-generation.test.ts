// Two signaling processes (`aigrid signal --redis`, child processes) on one Redis, with tiny-llama
// split between two Node CPU peers, one on each process: a client on the second process serves
// the model through the first (which coordinates: it holds the network's lease) and generates
// the golden tokens across both halves. The coordinating process is then killed (SIGKILL) in the
// middle of a generation: the generation completes on the data plane with the golden tokens, the
// peers that were on the killed process move to the other one under the same ids, the other
// process takes the lease over with the stored placement, and a new generation gets a route
// across both halves without anyone serving the model again or reloading a layer.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelSpecFromConfig, type ServingStatus } from '../client/grid/index.ts';
import { readConfig } from '../client/model/shard.ts';
import { connect, type Contribution, type Grid } from '../client/sdk/node.ts';
import type { ModelSpec } from '../protocol/index.ts';
import { FIXTURE_DIR, fixtures, type FixtureModel } from './fixtures/index.ts';
import { idOf, testIdentity } from './helpers/identities.ts';
import { openFixture } from './helpers/model-runtime.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { startRedisServer, type RedisServer } from './helpers/redis-server.ts';
import { waitFor } from './helpers/wait.ts';

const BIN = fileURLToPath(new URL('../bin/aigrid.js', import.meta.url));
const NETWORK = 'redis-gen';
const MB = 1024 * 1024;

interface SignalProcess {
  child: ChildProcess;
  httpUrl: string;
  wsUrl: string;
  /** Its id among the deployment's processes (the value of the leases it holds). */
  processId: string;
  output(): string;
}

let redis: RedisServer;
let admin: Redis;
let files: RangeServer;
let cacheDir: string;
let model: FixtureModel;
const processes: SignalProcess[] = [];
const grids: Grid[] = [];

/** `aigrid signal --redis` on a free port; resolves with its URLs and process id once it says them. */
async function startSignal(): Promise<SignalProcess> {
  const child = spawn(process.execPath, [BIN, 'signal', '--redis', redis.url, '--port', '0', '--heartbeat-ms', '1000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-50_000)));
  child.stderr!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-50_000)));
  const started = /AIGrid signaling on (http:\/\/\S+) \((ws:\/\/\S+)\), state in Redis \(process (\S+)\)/;
  await waitFor(() => started.test(output) || child.exitCode !== null, 20_000, 'the signaling process up').catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}; its output: ${output.slice(-2000)}`);
  });
  const m = started.exec(output);
  if (!m) throw new Error(`the signaling process exited (${child.exitCode}): ${output.slice(-2000)}`);
  const p: SignalProcess = { child, httpUrl: m[1]!, wsUrl: m[2]!, processId: m[3]!, output: () => output };
  processes.push(p);
  return p;
}

/** A Node peer (a client mesh and a contributing mesh) that starts on `urls[0]`. */
async function nodePeer(name: string, urls: string[], memoryBudgetMB: number): Promise<{ grid: Grid; contribution: Contribution }> {
  const grid = await connect({ signal: urls, network: NETWORK, identity: testIdentity(`${name}-client`), peerIdentity: testIdentity(name), verify: false });
  grids.push(grid);
  return { grid, contribution: await grid.contribute({ memoryBudgetMB, backend: 'cpu' }) };
}

const lease = () => admin.get(`aigrid:lease:${NETWORK}`);
const members = async (p: SignalProcess): Promise<string[]> => {
  const body = (await (await fetch(`${p.httpUrl}/api/networks/${NETWORK}`)).json()) as { peers: { peerId: string }[] };
  return body.peers.map((x) => x.peerId);
};

beforeAll(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'aigrid-redis-gen-'));
  process.env.AIGRID_CACHE_DIR = cacheDir; // the SDK's checkpoint cache
  redis = await startRedisServer();
  admin = new Redis(redis.url);
  files = await startRangeServer(FIXTURE_DIR);
  model = (await fixtures()).models.find((m) => m.name === 'tiny-llama')!;
});

afterAll(async () => {
  for (const g of grids) g.close();
  for (const p of processes) p.child.kill('SIGKILL');
  admin?.disconnect();
  await files?.close();
  await redis?.close();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

describe('two signaling processes on one Redis with the model split between their peers', () => {
  it('serve a generation across both halves, and finish it when the coordinating process is killed', async () => {
    const [a, b] = await Promise.all([startSignal(), startSignal()]);
    try {
      // Peer A joins process A first: A takes the network's lease and coordinates it.
      const peerA = await nodePeer('redis-gen-a', [a.wsUrl, b.wsUrl], 2);
      await waitFor(async () => (await lease()) === a.processId, 5_000, 'process A holding the lease');
      const peerB = await nodePeer('redis-gen-b', [b.wsUrl, a.wsUrl], 2);
      const client = await connect({ signal: [b.wsUrl, a.wsUrl], network: NETWORK, identity: testIdentity('redis-gen-client'), verify: false });
      grids.push(client);
      expect(peerA.contribution.peer.mesh.signaling.url).toBe(a.wsUrl);
      expect(peerB.contribution.peer.mesh.signaling.url).toBe(b.wsUrl);
      expect(client.mesh.signaling.url).toBe(b.wsUrl);

      // Room for two of tiny-llama's four layers on each peer: the model is split between them.
      const config = readConfig(await openFixture('tiny-llama'));
      const spec: ModelSpec = {
        modelId: 'tiny-llama',
        source: `${files.url}/tiny-llama`,
        numLayers: config.numLayers,
        hiddenSize: config.hiddenSize,
        layerBytes: Math.max(MB, modelSpecFromConfig(config, { source: 'x' }).layerBytes),
        weightDtype: 'f32',
        replication: 1,
      };
      expect(spec.numLayers).toBe(4);
      await client.serve(spec); // from process B, forwarded to A's coordinator
      await waitFor(async () => (await client.models.list()).data[0]?.health === 'ready', 30_000, 'tiny-llama ready on both peers');
      const ranges = [peerA, peerB].map((p) => p.contribution.status().map((s) => [s.start, s.end]));
      expect(ranges.flat().sort()).toEqual([[0, 2], [2, 4]]);
      const halves = [peerA.contribution.peerId, peerB.contribution.peerId].sort();
      expect(halves).toEqual([idOf('redis-gen-a'), idOf('redis-gen-b')].sort());

      // A greedy generation across both halves: the golden tokens, then on to the end of the
      // context (long enough that a process killed after a few tokens dies well before its end).
      const g = model.golden[2]!;
      const long = { model: spec.modelId, prompt: g.ids, maxTokens: config.maxPositions - g.ids.length, temperature: 0, stopTokens: [] };
      const first = await client.generate(long);
      expect(first.tokens.slice(0, g.greedy.length)).toEqual(g.greedy);
      expect(first.tokens).toHaveLength(long.maxTokens);
      expect(first.aigrid.route.map((h) => h.peerId).sort()).toEqual(halves);
      expect(first.aigrid.route.map((h) => h.end - h.start)).toEqual([2, 2]);

      // From here on no WebRTC link drops, no peer loads anything again, nobody leaves, and no
      // server answers anyone an error.
      const meshes = [peerA, peerB].flatMap((p) => [p.grid.mesh, p.contribution.peer.mesh]).concat(client.mesh);
      const dropped: string[] = [];
      for (const m of meshes) m.on('disconnect', (peerId: string) => dropped.push(`${m.peerId} lost ${peerId}`));
      const reloads: ServingStatus[] = [];
      for (const p of [peerA, peerB]) p.contribution.on('status', (s: ServingStatus) => s.state !== 'ready' && reloads.push(s));
      const leaves: string[] = [];
      client.mesh.signaling.on('leave', (peerId, reason) => leaves.push(`${peerId} ${reason}`));
      const errors: unknown[] = [];
      for (const m of meshes) m.signaling.on('message', (msg) => msg.type === 'error' && errors.push(msg));
      const reassigned: number[][] = [];
      peerA.contribution.peer.mesh.signaling.on('assign', (m) => reassigned.push([m.start, m.end]));

      // The same generation again; the coordinating process (peer A's) is killed after a few tokens.
      let killedAt = -1;
      let peerAOffAt = -1;
      let last = -1;
      const exited = new Promise<number>((resolve) => a.child.once('exit', () => resolve(performance.now())));
      // How long after A's death B holds the network's lease, watched from then on.
      const takeover = exited.then(async (at) => {
        await waitFor(async () => (await lease()) === b.processId, 10_000, 'process B holding the lease');
        return performance.now() - at;
      });
      takeover.catch(() => {}); // awaited below
      const crossed = await client.generate({
        ...long,
        onToken: (_t, step) => {
          last = step;
          if (killedAt >= 0 && peerAOffAt < 0 && !peerA.contribution.peer.mesh.signaling.connected) peerAOffAt = step;
          if (step === 2 && killedAt < 0) {
            killedAt = step;
            a.child.kill('SIGKILL');
          }
        },
      });
      expect(killedAt).toBe(2);
      expect(crossed.tokens.slice(0, g.greedy.length)).toEqual(g.greedy);
      expect(crossed.tokens).toEqual(first.tokens);
      expect(crossed.aigrid.route.map((h) => h.peerId).sort()).toEqual(halves);
      expect(crossed.aigrid.failovers).toBe(0);
      // Peer A lost its signaling process while the generation still had tokens to make.
      expect(peerAOffAt).toBeGreaterThan(killedAt);
      expect(peerAOffAt).toBeLessThan(last);
      await exited;
      expect(a.child.signalCode).toBe('SIGKILL');

      // Peer A's meshes are on process B now, under the same ids; B holds the lease.
      for (const m of [peerA.grid.mesh, peerA.contribution.peer.mesh]) {
        await waitFor(() => m.signaling.connected && m.signaling.url === b.wsUrl, 10_000, `${m.peerId} on process B`);
      }
      expect(peerA.contribution.peerId).toBe(idOf('redis-gen-a'));
      expect(peerA.grid.peerId).toBe(idOf('redis-gen-a-client'));
      // B took the lease as soon as an operation it forwarded (peer A's join) found nobody listening
      // on A's channel, not once A's lease ran out (5 s after A's last renewal).
      const takeoverMs = await takeover;
      expect(takeoverMs).toBeLessThan(3_000);
      expect((await members(b)).sort()).toEqual([idOf('redis-gen-a'), idOf('redis-gen-a-client'), idOf('redis-gen-b'), idOf('redis-gen-b-client'), idOf('redis-gen-client')].sort());

      // Ready again without a serve: the stored placement stands, peer A hears its half again (and
      // reports it ready, loading nothing), each peer keeps its half.
      await waitFor(() => reassigned.length > 0, 10_000, 'peer A told its range again by process B');
      expect(reassigned).toEqual([ranges[0]![0]]);
      await waitFor(async () => (await client.models.list()).data[0]?.health === 'ready', 15_000, 'tiny-llama ready after the takeover');
      expect([peerA, peerB].map((p) => p.contribution.status().map((s) => [s.start, s.end]))).toEqual(ranges);
      const g1 = model.golden[1]!;
      const after = await client.generate({ model: spec.modelId, prompt: g1.ids, maxTokens: g1.greedy.length, temperature: 0, stopTokens: [] });
      expect(after.tokens).toEqual(g1.greedy);
      expect(after.aigrid.route.map((h) => h.peerId).sort()).toEqual(halves);
      expect(dropped).toEqual([]);
      expect(reloads).toEqual([]);
      expect(leaves).toEqual([]);
      expect(errors).toEqual([]);
    } catch (err) {
      for (const [name, p] of [['A', a], ['B', b]] as const) console.error(`process ${name} (${p.processId}) said:\n${p.output().slice(-4000)}`);
      throw err;
    }
  });
});
