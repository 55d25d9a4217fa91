// npm run bench:grid — collective serving of a random checkpoint with SmolLM2-135M's shapes
// (30 layers, hidden 576, 9 heads / 3 kv heads, MLP 1536, vocab 49152) over Node peers on
// loopback (CPU backend): single-stream decode on 1, 2 and 3 peers, aggregate throughput with 1, 4
// and 8 sessions on 3 peers (continuous batching), bytes per token per hop, and recovery time after
// a peer is killed. Ends with one line: RESULT {json}.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { explicitRoutes, GridPeer, RemoteChain, type FailoverEvent } from '../../client/grid/index.ts';
import { nodeModelOpener } from '../../client/grid/node.ts';
import { Mesh } from '../../client/mesh/index.ts';
import { nodePlatform } from '../../client/mesh/node.ts';
import { openCheckpointNode } from '../../client/model/checkpoint/node.ts';
import { Head } from '../../client/model/head.ts';
import { ServingFrame, type Capabilities, type Hop, type ModelSpec } from '../../client/protocol/index.ts';
import { startSignalingServer } from '../../signaling/server.ts';
import { writeCheckpoint } from '../fixtures/checkpoint-files.ts';
import { configJson } from '../fixtures/hf-config.ts';
import type { ModelSpec as FixtureSpec } from '../fixtures/specs.ts';
import { buildVocab } from '../fixtures/vocab.ts';
import { randomWeights } from '../fixtures/weights.ts';
import { startRangeServer } from '../helpers/range-server.ts';
import { GpuContext } from '../../kernels/context.ts';
import { nodeGpu } from '../../kernels/node-gpu.ts';

const DIR = new URL('../.fixtures/bench-smollm2-135m-shapes', import.meta.url).pathname;
const SPEC: FixtureSpec = {
  name: 'bench-smollm2-135m-shapes', modelType: 'llama', layers: 30, hidden: 576, heads: 9, kvHeads: 3, intermediate: 1536,
  vocabSize: 49152, words: 200, vocab: 'chatml-first', maxPositions: 2048, tied: true, eps: 1e-5, ropeTheta: 100000,
  writeHeadDim: false, scales: { embed: 1, proj: 1, head: 24, bias: 0, norm: 0.1 }, seed: 135,
};
const DECODE_STEPS = Number(process.env.AIGRID_BENCH_STEPS ?? 8);
/** cpu (default here) or webgpu (Node's adapter through the webgpu package; for machines with a GPU). */
const BACKEND = process.env.AIGRID_BENCH_BACKEND === 'webgpu' ? 'webgpu' : 'cpu';
const PROMPT = Array.from({ length: 16 }, (_, i) => 3 + i * 7);
const caps: Capabilities = { kind: 'node', gpu: null, memoryBudgetMB: 4096, throughput: { gflops: 1, backend: 'cpu' } };

async function checkpoint(): Promise<void> {
  if (existsSync(join(DIR, 'model.safetensors'))) return;
  mkdirSync(DIR, { recursive: true });
  writeFileSync(join(DIR, 'config.json'), JSON.stringify(configJson(SPEC, buildVocab(SPEC), 'F16'), null, 2));
  await writeCheckpoint(DIR, randomWeights(SPEC, SPEC.seed), 'F16');
}

const round = (x: number, d = 3) => Number(x.toFixed(d));

async function main(): Promise<void> {
  console.log('writing or reusing the checkpoint ...');
  await checkpoint();
  // All peers share this process and the CPU backend computes synchronously, so the event loop
  // stalls for whole passes; a long heartbeat keeps the server from taking that for dead peers.
  const server = await startSignalingServer({ heartbeatMs: 60_000 });
  const files = await startRangeServer(join(DIR, '..'));
  const meshes: Mesh[] = [];
  const peers: GridPeer[] = [];
  const join_ = async (id: string, memoryBudgetMB = 4096) => {
    const m = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network: 'bench', capabilities: { ...caps, memoryBudgetMB }, autoConnect: false, maxConnections: 16, peerId: id });
    meshes.push(m);
    await m.start();
    return m;
  };
  const gpu = BACKEND === 'webgpu' ? await GpuContext.create({ gpu: await nodeGpu() }) : undefined;
  try {
    const model: ModelSpec = {
      modelId: SPEC.name, source: `${files.url}/${SPEC.name}`, numLayers: 30, hiddenSize: 576, layerBytes: 1, weightDtype: 'f32', replication: 1,
    };
    const peer = async (id: string, start: number, end: number) => {
      const p = new GridPeer({ mesh: await join_(id), backend: BACKEND, gpu, open: nodeModelOpener({ cache: false }), followAssignments: false });
      peers.push(p);
      await p.assign(model, start, end);
      return p;
    };
    console.log('loading peers ...');
    const one = [await peer('one-a', 0, 30)];
    const two = [await peer('two-a', 0, 15), await peer('two-b', 15, 30)];
    const three = [await peer('three-a', 0, 10), await peer('three-b', 10, 20), await peer('three-c', 20, 30)];
    const spare = await peer('three-b2', 10, 20);
    const head = await Head.load(await openCheckpointNode(DIR), { backend: BACKEND, gpu });
    const client = await join_('bench-client', 0);
    const hops = (ps: GridPeer[], cuts: number[]): Hop[] => ps.map((p, i) => ({ peerId: p.peerId, start: cuts[i]!, end: cuts[i + 1]! }));
    const logFailover = (e: FailoverEvent) => console.log(`failover: ${e.error.code} ${e.error.message.slice(0, 200)} (blame ${e.blame ?? 'none'})`);
    const chainOf = (routes: Hop[][]) =>
      new RemoteChain({ mesh: client, modelId: model.modelId, numLayers: 30, hiddenSize: 576, routes: explicitRoutes(routes), onFailover: logFailover, timeoutMs: 120_000 });
    const routes = { 1: hops(one, [0, 30]), 2: hops(two, [0, 15, 30]), 3: hops(three, [0, 10, 20, 30]) };

    /** Decode tokens per second of `sessions` generations at once (prefill excluded). */
    const decodeRate = async (chain: RemoteChain, sessions: number) => {
      const firstTokenAt: number[] = [];
      const lastTokenAt: number[] = [];
      await Promise.all(
        Array.from({ length: sessions }, (_, s) =>
          chain.generate(head, PROMPT.map((t) => t + s), {
            maxTokens: DECODE_STEPS + 1,
            temperature: 0,
            onToken: (_t, step) => (step === 0 ? (firstTokenAt[s] = performance.now()) : (lastTokenAt[s] = performance.now())),
          }),
        ),
      );
      const start = Math.min(...firstTokenAt);
      const end = Math.max(...lastTokenAt);
      return (sessions * DECODE_STEPS) / ((end - start) / 1000);
    };

    const single: Record<number, number> = {};
    for (const n of [1, 2, 3] as const) {
      const chain = chainOf([routes[n]]);
      await decodeRate(chain, 1); // warm-up: links, pools
      single[n] = await decodeRate(chain, 1);
      chain.close();
    }
    const chain3 = chainOf([routes[3]]);
    let bytes = 0;
    let frames = 0;
    three[1]!.mesh.on('frame', (_from, f) => {
      if (f.type !== ServingFrame.forward || f.payload.byteLength > 32 + 576 * 4) return; // decode frames only
      bytes += f.payload.byteLength;
      frames++;
    });
    const aggregate: Record<number, number> = {};
    for (const sessions of [1, 4, 8]) aggregate[sessions] = await decodeRate(chain3, sessions);
    chain3.close();

    // Recovery: kill the middle peer mid-generation; its replica takes over after a replay.
    let killedAt = 0;
    let recoveredAt = 0;
    const failover = chainOf([routes[3], hops([three[0]!, spare, three[2]!], [0, 10, 20, 30])]);
    await failover.generate(head, PROMPT, {
      maxTokens: DECODE_STEPS + 1,
      temperature: 0,
      onToken: (_t, step) => {
        if (killedAt && !recoveredAt) recoveredAt = performance.now();
        if (step === 3) {
          killedAt = performance.now();
          three[1]!.close();
          meshes.find((m) => m.peerId === three[1]!.peerId)!.close();
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
      'bytes per token per hop': frames ? bytes / frames : 0,
      'recovery ms (kill to next token, minus one step)': round(recoveryMs, 0),
      'largest decode batch at the middle peer': three[1]!.batchStats.largest,
    };
    const where = gpu ? `WebGPU (${gpu.adapter.vendor} ${gpu.adapter.description})` : 'CPU';
    console.log(`SmolLM2-135M shapes, random weights, ${where} backend, ${DECODE_STEPS} decode steps per stream, loopback`);
    console.table(rows);
    const result = {
      pipelineEfficiency3: round(single[3]! / single[1]!, 3),
      aggregate8VsSingle: round(aggregate[8]! / aggregate[1]!, 2),
      bytesPerTokenPerHop: frames ? bytes / frames : 0,
      recoveryMs: round(recoveryMs, 0),
    };
    console.log(`RESULT ${JSON.stringify(result)}`);
    head.destroy();
  } finally {
    for (const p of peers) p.close();
    for (const m of meshes) m.close();
    await files.close();
    await server.close();
  }
  process.exit(0);
}

await main();
