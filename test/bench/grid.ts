// npm run bench:grid — collective serving of a random checkpoint with SmolLM2-135M's shapes
// (30 layers, hidden 576, 9 heads / 3 kv heads, MLP 1536, vocab 49152) over Node peers on
// loopback (CPU backend): single-stream decode on 1, 2 and 3 peers, aggregate throughput with 1, 4
// and 8 sessions on 3 peers (continuous batching), bytes per token per hop, and recovery time after
// a peer process is killed. Each serving peer is its own Node process (grid-peer.ts), so pipeline
// stages run in parallel as on separate machines; the signaling server, the weight server and the
// client (embedding, head with HeadBatcher, sampler) share this process. Each figure is the median
// of AIGRID_BENCH_REPEAT runs (default 5). Ends with one line: RESULT {json}.
// Environment: AIGRID_BENCH_STEPS (decode steps per stream, default 32: short
// runs measure little but the ramp and scheduling noise), AIGRID_BENCH_REPEAT,
// AIGRID_BENCH_BACKEND=webgpu, AIGRID_BENCH_DEBUG=1 (round trips to the peers; per run: CPU use
// and mean batch of each process), AIGRID_BENCH_PROF=DIR (CPU profiles of every process during the
// 8-session runs).
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { explicitRoutes, RemoteChain, type FailoverEvent } from '../../client/grid/index.ts';
import { Mesh } from '../../client/mesh/index.ts';
import { nodePlatform } from '../../client/mesh/node.ts';
import { openCheckpointNode } from '../../client/model/checkpoint/node.ts';
import { Head } from '../../client/model/head.ts';
import { HeadBatcher } from '../../client/model/head-batcher.ts';
import type { Capabilities, Hop, ModelSpec } from '../../protocol/index.ts';
import { startSignalingServer } from '../../signaling/server.ts';
import { writeCheckpoint } from '../fixtures/checkpoint-files.ts';
import { configJson } from '../fixtures/hf-config.ts';
import type { ModelSpec as FixtureSpec } from '../fixtures/specs.ts';
import { buildVocab } from '../fixtures/vocab.ts';
import { randomWeights } from '../fixtures/weights.ts';
import { startRangeServer } from '../helpers/range-server.ts';
import { GpuContext } from '../../kernels/context.ts';
import { nodeGpu } from '../../kernels/node-gpu.ts';
import type { ParentMessage, PeerConfig, PeerMessage } from './grid-peer.ts';
import { startProfile, stopProfile } from './profile.ts';
import { idOf, testIdentity } from '../helpers/identities.ts';

const DIR = new URL('../.fixtures/bench-smollm2-135m-shapes', import.meta.url).pathname;
const PEER_SCRIPT = new URL('./grid-peer.ts', import.meta.url).pathname;
const REGISTER = new URL('../../bin/register.js', import.meta.url).pathname;
const SPEC: FixtureSpec = {
  name: 'bench-smollm2-135m-shapes', modelType: 'llama', layers: 30, hidden: 576, heads: 9, kvHeads: 3, intermediate: 1536,
  vocabSize: 49152, words: 200, vocab: 'chatml-first', maxPositions: 2048, tied: true, eps: 1e-5, ropeTheta: 100000,
  writeHeadDim: false, scales: { embed: 1, proj: 1, head: 24, bias: 0, norm: 0.1 }, seed: 135,
};
const DECODE_STEPS = Number(process.env.AIGRID_BENCH_STEPS ?? 32);
/** Runs of each measurement; the table gives their median. */
const REPEAT = Math.max(1, Number(process.env.AIGRID_BENCH_REPEAT ?? 5));
/** cpu (default here) or webgpu (Node's adapter through the webgpu package; for machines with a GPU). */
const BACKEND = process.env.AIGRID_BENCH_BACKEND === 'webgpu' ? 'webgpu' : 'cpu';
const PROFILE_DIR = process.env.AIGRID_BENCH_PROF;
const PROMPT = Array.from({ length: 16 }, (_, i) => 3 + i * 7);
const caps: Capabilities = { kind: 'node', gpu: null, memoryBudgetMB: 4096, throughput: { gflops: 1, backend: 'cpu' } };

/** A serving peer in a child process. */
class PeerProcess {
  private readonly child: ChildProcess;
  private readonly ready: Promise<void>;
  private statsWaiting: ((m: Extract<PeerMessage, { type: 'stats' }>) => void)[] = [];

  readonly peerId: string;

  constructor(name: string, config: PeerConfig) {
    this.peerId = idOf(name);
    const peerId = name; // for messages and profile folders
    this.child = fork(PEER_SCRIPT, [JSON.stringify(config)], { execArgv: ['--import', REGISTER, ...(process.env.AIGRID_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.AIGRID_BENCH_PROF}/${peerId}`] : [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.ready = new Promise((resolve, reject) => {
      this.child.on('message', (m: PeerMessage) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'error') reject(new Error(`${peerId}: ${m.message}`));
        else if (m.type === 'stats') this.statsWaiting.shift()?.(m);
      });
      this.child.once('exit', (code, signal) => reject(new Error(`${peerId} exited (${signal ?? code}) before it was ready`)));
    });
  }

  whenReady(): Promise<void> {
    return this.ready;
  }

  /** Decode frames received (since the last reset) and the largest decode batch it ran. */
  stats(reset = false): Promise<Omit<Extract<PeerMessage, { type: 'stats' }>, 'type'>> {
    return new Promise((resolve) => {
      this.statsWaiting.push(resolve);
      this.child.send({ type: 'stats', reset } satisfies ParentMessage);
    });
  }

  /** Starts a CPU profile, or with `file` stops it and writes it there. */
  profile(file?: string): void {
    this.child.send({ type: 'profile', file } satisfies ParentMessage);
  }

  /** Kills the process the way a crash or a pulled plug would: no goodbye to anyone. */
  kill(): void {
    this.child.kill('SIGKILL');
  }

  close(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }
}

async function checkpoint(): Promise<void> {
  if (existsSync(join(DIR, 'model.safetensors'))) return;
  mkdirSync(DIR, { recursive: true });
  writeFileSync(join(DIR, 'config.json'), JSON.stringify(configJson(SPEC, buildVocab(SPEC), 'F16'), null, 2));
  await writeCheckpoint(DIR, randomWeights(SPEC, SPEC.seed), 'F16');
}

const round = (x: number, d = 3) => Number(x.toFixed(d));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  console.log('writing or reusing the checkpoint ...');
  await checkpoint();
  // The client's head runs synchronously in this process and stalls its event loop for whole
  // passes; a long heartbeat keeps the server from taking that for a dead client. A killed peer
  // process is seen at once: its socket closes.
  const server = await startSignalingServer({ heartbeatMs: 60_000 });
  const files = await startRangeServer(join(DIR, '..'));
  const procs: PeerProcess[] = [];
  let client: Mesh | undefined;
  const gpu = BACKEND === 'webgpu' ? await GpuContext.create({ gpu: await nodeGpu() }) : undefined;
  try {
    const model: ModelSpec = {
      modelId: SPEC.name, source: `${files.url}/${SPEC.name}`, numLayers: 30, hiddenSize: 576, layerBytes: 64 * 1024 * 1024, weightDtype: 'f32', replication: 1,
    };
    const peer = (peerId: string, start: number, end: number) => {
      const p = new PeerProcess(peerId, {
        name: peerId, signal: server.wsUrl, network: 'bench', model, start, end, backend: BACKEND, capabilities: caps, decodeFrameBytes: 32 + 576 * 4,
      });
      procs.push(p);
      return p;
    };
    console.log('loading peers (one process each) ...');
    const one = [peer('one-a', 0, 30)];
    const two = [peer('two-a', 0, 15), peer('two-b', 15, 30)];
    const three = [peer('three-a', 0, 10), peer('three-b', 10, 20), peer('three-c', 20, 30)];
    const spare = peer('three-b2', 10, 20);
    await Promise.all(procs.map((p) => p.whenReady()));
    const head = await Head.load(await openCheckpointNode(DIR), { backend: BACKEND, gpu });
    // The client's continuous batching: logits of sessions waiting together run as one pass.
    const heads = new HeadBatcher(head);
    client = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network: 'bench', capabilities: { ...caps, memoryBudgetMB: 0 }, autoConnect: false, maxConnections: 16, identity: testIdentity('bench-client') });
    await client.start();
    const mesh = client;
    const hops = (ps: PeerProcess[], cuts: number[]): Hop[] => ps.map((p, i) => ({ peerId: p.peerId, start: cuts[i]!, end: cuts[i + 1]! }));
    const logFailover = (e: FailoverEvent) => console.log(`failover: ${e.error.code} ${e.error.message.slice(0, 200)} (blame ${e.blame ?? 'none'})`);
    const chainOf = (routes: Hop[][]) =>
      new RemoteChain({ mesh, modelId: model.modelId, numLayers: 30, hiddenSize: 576, routes: explicitRoutes(routes), onFailover: logFailover, timeoutMs: 120_000 });
    const routes = { 1: hops(one, [0, 30]), 2: hops(two, [0, 15, 30]), 3: hops(three, [0, 10, 20, 30]) };
    /**
     * Decode tokens per second of `sessions` generations at once. Prompts are prefilled first (their
     * chunks queue on the peers ahead of decode steps), so the window opens when the last session
     * has its first token and counts the decode tokens after that; `fromFirst` is the older figure
     * whose window opens at the first session's first token and so includes the others' prefills.
     */
    let generations = 0;
    const decodeRate = async (chain: RemoteChain, sessions: number, hopCount: number) => {
      const firstTokenAt: number[] = [];
      const decodeAt: number[] = [];
      await Promise.all(
        Array.from({ length: sessions }, (_, s) =>
          chain.generate(heads.session(`${sessions}:${s}:${++generations}`, hopCount + 1), PROMPT.map((t) => t + s), {
            maxTokens: DECODE_STEPS + 1,
            temperature: 0,
            onToken: (_t, step) => (step === 0 ? (firstTokenAt[s] = performance.now()) : decodeAt.push(performance.now())),
          }),
        ),
      );
      const start = Math.max(...firstTokenAt);
      const end = Math.max(...decodeAt);
      const counted = decodeAt.filter((t) => t > start).length;
      return { rate: counted / ((end - start) / 1000), fromFirst: decodeAt.length / ((end - Math.min(...firstTokenAt)) / 1000) };
    };

    // Each figure is the median of REPEAT runs, the configurations taking turns, so that load from
    // elsewhere on the machine falls on all of them alike.
    const chains = { 1: chainOf([routes[1]]), 2: chainOf([routes[2]]), 3: chainOf([routes[3]]) };
    for (const n of [1, 2, 3] as const) await decodeRate(chains[n], 1, n); // warm-up: links, pools, compiled kernels
    if (process.env.AIGRID_BENCH_DEBUG) {
      for (const p of [one[0]!, three[0]!, three[2]!]) {
        const link = mesh.link(p.peerId);
        if (!link) continue;
        const rtts: number[] = [];
        for (let i = 0; i < 30; i++) rtts.push(await link.ping());
        console.log(`round trip to ${p.peerId}: median ${median(rtts).toFixed(2)} ms, min ${Math.min(...rtts).toFixed(2)} ms`);
      }
    }
    const singleRuns: Record<number, number[]> = { 1: [], 2: [], 3: [] };
    for (let rep = 0; rep < REPEAT; rep++) {
      for (const n of [1, 2, 3] as const) singleRuns[n]!.push((await decodeRate(chains[n], 1, n)).rate);
    }
    chains[1].close();
    chains[2].close();
    const chain3 = chains[3];
    await three[1]!.stats(true); // count the middle peer's decode frames from here on
    const aggregateRuns: Record<number, number[]> = { 1: [], 4: [], 8: [] };
    const fromFirstRuns: number[] = [];
    for (let rep = 0; rep < REPEAT; rep++) {
      for (const sessions of [1, 4, 8]) {
        const before = await Promise.all(three.map((p) => p.stats()));
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        const headPasses = heads.stats.passes;
        const headRows = heads.stats.rows;
        const profile = PROFILE_DIR && sessions === 8 ? (tag: string) => join(PROFILE_DIR, `${tag}-${rep}.cpuprofile`) : undefined;
        if (profile) {
          three.forEach((p) => p.profile());
          await startProfile();
        }
        const { rate, fromFirst } = await decodeRate(chain3, sessions, 3);
        if (profile) {
          three.forEach((p) => p.profile(profile(p.peerId)));
          await stopProfile(profile('client'));
        }
        aggregateRuns[sessions]!.push(rate);
        if (sessions === 8) fromFirstRuns.push(fromFirst);
        const wall = performance.now() - t0;
        const cpu1 = process.cpuUsage(cpu0);
        const after = await Promise.all(three.map((p) => p.stats()));
        if (process.env.AIGRID_BENCH_DEBUG) {
          const perPeer = after.map((a, i) => {
            const b = before[i]!;
            return `${three[i]!.peerId}: cpu ${((a.cpuMs - b.cpuMs) / wall * 100).toFixed(0)}% (js ${((a.busyMs - b.busyMs) / wall * 100).toFixed(0)}%), ${a.passes - b.passes} passes, mean batch ${((a.steps - b.steps) / Math.max(1, a.passes - b.passes)).toFixed(2)}`;
          });
          const headBatch = (heads.stats.rows - headRows) / Math.max(1, heads.stats.passes - headPasses);
          console.log(`${sessions} sessions: ${rate.toFixed(1)} tok/s, ${wall.toFixed(0)} ms, client cpu ${(((cpu1.user + cpu1.system) / 1000 / wall) * 100).toFixed(0)}% (mean head batch ${headBatch.toFixed(2)}); ${perPeer.join('; ')}`);
        }
      }
    }
    chain3.close();
    const single = Object.fromEntries(Object.entries(singleRuns).map(([k, v]) => [k, median(v)])) as Record<number, number>;
    const aggregate = Object.fromEntries(Object.entries(aggregateRuns).map(([k, v]) => [k, median(v)])) as Record<number, number>;
    const middle = await three[1]!.stats();
    const bytesPerToken = middle.frames ? middle.bytes / middle.frames : 0;

    // Recovery: kill the middle peer mid-generation; its replica takes over after a replay.
    let killedAt = 0;
    let recoveredAt = 0;
    const failover = chainOf([routes[3], hops([three[0]!, spare, three[2]!], [0, 10, 20, 30])]);
    // At least two tokens after the kill, whatever the number of decode steps.
    await failover.generate(heads.session('failover', 4), PROMPT, {
      maxTokens: Math.max(DECODE_STEPS + 1, 6),
      temperature: 0,
      onToken: (_t, step) => {
        if (killedAt && !recoveredAt) recoveredAt = performance.now();
        if (step === 3) {
          killedAt = performance.now();
          three[1]!.kill();
        }
      },
    });
    failover.close();
    const stepMs = 1000 / single[3]!;
    const recoveryMs = recoveredAt - killedAt - stepMs;

    const rows = {
      'decode tok/s, 1 peer': round(single[1]!, 2),
      'decode tok/s, 2 peers': round(single[2]!, 2),
      'decode tok/s, 3 peers': round(single[3]!, 2),
      'aggregate tok/s, 1 session (3 peers)': round(aggregate[1]!, 2),
      'aggregate tok/s, 4 sessions': round(aggregate[4]!, 2),
      'aggregate tok/s, 8 sessions': round(aggregate[8]!, 2),
      'aggregate tok/s, 8 sessions, window from the first session\'s first token': round(median(fromFirstRuns), 2),
      'bytes per token per hop': bytesPerToken,
      'recovery ms (kill to next token, minus one step)': round(recoveryMs, 0),
      'largest decode batch at the middle peer': middle.largestBatch,
    };
    const where = gpu ? `WebGPU (${gpu.adapter.vendor} ${gpu.adapter.description})` : 'CPU';
    console.log(`SmolLM2-135M shapes, random weights, ${where} backend, ${DECODE_STEPS} decode steps per stream, one process per peer, loopback`);
    console.table(rows);
    const runs = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
    console.log(`runs (tok/s), median in the table: 1 peer [${runs(singleRuns[1]!)}], 2 peers [${runs(singleRuns[2]!)}], 3 peers [${runs(singleRuns[3]!)}]; ` +
      `1 session [${runs(aggregateRuns[1]!)}], 4 sessions [${runs(aggregateRuns[4]!)}], 8 sessions [${runs(aggregateRuns[8]!)}]`);
    const result = {
      pipelineEfficiency3: round(single[3]! / single[1]!, 3),
      aggregate8VsSingle: round(aggregate[8]! / aggregate[1]!, 2),
      bytesPerTokenPerHop: bytesPerToken,
      recoveryMs: round(recoveryMs, 0),
    };
    console.log(`RESULT ${JSON.stringify(result)}`);
    head.destroy();
  } finally {
    client?.close();
    for (const p of procs) p.close();
    await files.close();
    await server.close();
  }
  process.exit(0);
}

await main();
