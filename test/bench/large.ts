// npm run bench:large — a model larger than any one peer offers: a random Llama-3-8B-shaped
// Q4_K_M GGUF (32 layers, hidden 4096, MLP 14336, vocab 128256, 32 / 8 heads, untied head; written
// in quantized form by gguf-random.ts) served by four `aigrid peer` processes on the CPU, each
// offering under a third of the file's bytes, so placement must split it. A signaling server and a
// Range file server on 127.0.0.1 run in this process, which is also the client (its head loaded
// from the same file). Measured: load time (serve message to every layer ready), single-stream
// decode tok/s, aggregate decode tok/s of 8 concurrent sessions, peak RSS of each peer (VmHWM);
// against llama.cpp (node-llama-cpp 3.21.1, see edge.ts) running the whole file in one process
// with 2 threads. The two never run at once. Last line: RESULT {json}.
// Environment: AIGRID_BENCH_LAYERS (a slice of the first N layers, e.g. 4, to try the run on
// less memory), AIGRID_BENCH_DECODE (single-stream decode tokens, default 8),
// AIGRID_BENCH_SESSION_DECODE (decode tokens per concurrent session, default 4).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RemoteChain, signalingRoutes } from '../../client/grid/index.ts';
import { modelSpecFromCheckpoint, weightsPerLayer } from '../../client/grid/model-spec.ts';
import { Mesh } from '../../client/mesh/index.ts';
import { nodePlatform } from '../../client/mesh/node.ts';
import { CpuBackend } from '../../client/model/backend/cpu.ts';
import { openModelNode } from '../../client/model/checkpoint/node.ts';
import { Head } from '../../client/model/head.ts';
import { HeadBatcher } from '../../client/model/head-batcher.ts';
import { readConfig } from '../../client/model/shard.ts';
import { GGML_TYPE } from '../../kernels/ggml-quants.ts';
import type { ModelCoverage } from '../../protocol/index.ts';
import { startSignalingServer } from '../../signaling/server.ts';
import { idOf, testIdentity, writeKeyFile } from '../helpers/identities.ts';
import { startRangeServer } from '../helpers/range-server.ts';
import { llamaCppRunner, loadLlamaCpp, median, pressureNote, promptIds, round, LLAMA_CPP_VERSION } from './edge.ts';
import { BENCH_DIR, randomGguf, type LlamaShape } from './gguf-random.ts';

const MB = 1024 * 1024;
const BIN = fileURLToPath(new URL('../../bin/aigrid.js', import.meta.url));
const NETWORK = 'bench-large';
const PEERS = 4;
const SESSIONS = 8;
const LLAMA_THREADS = 2;

const LLAMA3_8B: LlamaShape = {
  name: 'llama3-8b', layers: 32, hidden: 4096, heads: 32, kvHeads: 8, intermediate: 14336, vocab: 128256, tied: false,
  ropeTheta: 500000, contextLength: 8192, pre: 'llama-bpe',
};

const log = (line: string) => console.log(line);

/**
 * Bytes the CPU backend keeps per byte of a quantized weight: about 1 when it keeps the blocks,
 * about 7 (f32 of Q4_K) when it decodes them at load. Measured on one 4096 x 4096 Q4_K matrix.
 */
function cpuExpansion(): number {
  const rows = 4096;
  const cols = 4096;
  const bytes = new Uint8Array((rows * cols / 256) * 144).fill(0x11); // small finite f16 scales
  const backend = new CpuBackend();
  const before = process.memoryUsage().rss;
  const weight = backend.quantizedWeight({ type: GGML_TYPE.Q4_K, rows, cols, bytes }, 'probe');
  const grown = process.memoryUsage().rss - before;
  backend.dispose(weight);
  backend.destroy();
  return grown / bytes.length;
}

/** An `aigrid peer` process; its stdout is read line by line (and must be, or it would block). */
class PeerProcess {
  readonly child: ChildProcess;
  readonly peerId: string;
  readonly lines: string[] = [];
  private readonly joined: Promise<void>;

  constructor(name: string, signal: string, memoryMb: number, cacheDir: string) {
    this.peerId = idOf(name);
    const key = writeKeyFile(join(cacheDir, `${name}.key`), name);
    const args = [BIN, 'peer', '--signal', signal, '--network', NETWORK, '--identity', key, '--memory-mb', String(memoryMb), '--backend', 'cpu'];
    this.child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, AIGRID_CACHE_DIR: join(cacheDir, name) } });
    this.joined = new Promise((resolve, reject) => {
      let rest = '';
      const shown = new Set<string>(); // status lines repeat as the coordinator re-announces
      this.child.stdout!.on('data', (d: Buffer) => {
        const parts = (rest + d.toString()).split('\n');
        rest = parts.pop()!;
        for (const line of parts) {
          this.lines.push(line);
          if (line.startsWith('joined network')) resolve();
          if (/^serving |^warning (?!ERR_SESSION_EVICTED)/.test(line) && !shown.has(line)) log(`  ${name}: ${line}`);
          shown.add(line);
        }
      });
      this.child.once('exit', (code, sig) => reject(new Error(`${name} exited (${sig ?? code}): ${this.lines.slice(-5).join(' | ')}`)));
    });
  }

  whenJoined(): Promise<void> {
    return this.joined;
  }

  /** Peak resident memory so far (VmHWM), MB. */
  peakRssMb(): number {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  }

  /** Layer ranges it reported ready. */
  served(): string[] {
    return [...new Set(this.lines.filter((l) => l.startsWith('serving ') && l.includes(': ready')).map((l) => /\[\d+, \d+\)/.exec(l)?.[0] ?? l))];
  }

  /** Lines so far that contain `text`. */
  count(text: string): number {
    return this.lines.filter((l) => l.includes(text)).length;
  }

  close(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }
}

/** llama.cpp on the whole file: decode tok/s of one greedy stream (median of 2 runs after a warm-up). */
async function llamaCppDecode(path: string, prompt: number[], decode: number): Promise<number> {
  const llama = await loadLlamaCpp(log);
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: path });
  log(`llama.cpp ${LLAMA_CPP_VERSION}: loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  try {
    const runner = await llamaCppRunner(model, LLAMA_THREADS, 256);
    try {
      await runner.generate(prompt, 2);
      const rates: number[] = [];
      for (let r = 0; r < 2; r++) {
        const g = await runner.generate(prompt, decode + 1);
        rates.push(decode / ((g.at.at(-1)! - g.at[1]!) / 1000));
        log(`llama.cpp ${LLAMA_THREADS}t: prefill ${prompt.length} tokens ${((g.at[1]! - g.at[0]!) / 1000).toFixed(1)} s, decode ${rates.at(-1)!.toFixed(2)} tok/s`);
      }
      return median(rates);
    } finally {
      await runner.close();
    }
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

interface GridFigures {
  loadS: number;
  decodeTokS: number;
  sessionsTokS: number;
  peakRssMb: number[];
}

async function grid(path: string, prompt: number[], decode: number, sessionDecode: number): Promise<GridFigures> {
  const checkpoint = await openModelNode(path);
  const config = readConfig(checkpoint);
  const server = await startSignalingServer({ heartbeatMs: 60_000 }); // the client's head stalls this loop for whole passes
  const files = await startRangeServer(BENCH_DIR);
  const spec = modelSpecFromCheckpoint(checkpoint, { modelId: `${basename(path, '.gguf')}`.slice(0, 100), source: `${files.url}/${basename(path)}`, replication: 1 });
  // Under a third of the file each, yet room for a fair share of layers plus one.
  const fileBytes = statSync(path).size;
  const memoryMb = Math.floor(Math.min(fileBytes / 3 - MB, (Math.ceil(config.numLayers / PEERS) + 1) * spec.layerBytes) / MB);
  log(`grid: ${PEERS} peers offering ${memoryMb} MB each (file ${(fileBytes / MB).toFixed(0)} MB, ${(spec.layerBytes / MB).toFixed(0)} MB a layer)`);
  const cacheDir = join(BENCH_DIR, `peer-cache-${process.pid}`);
  mkdirSync(cacheDir, { recursive: true });
  const peers: PeerProcess[] = [];
  let client: Mesh | undefined;
  let head: Head | undefined;
  try {
    for (let i = 0; i < PEERS; i++) peers.push(new PeerProcess(`large-peer-${i}`, server.wsUrl, memoryMb, cacheDir));
    await Promise.all(peers.map((p) => p.whenJoined()));
    client = new Mesh({
      ...nodePlatform(), signal: server.wsUrl, network: NETWORK, autoConnect: false, maxConnections: 16, identity: testIdentity('large-client'),
      capabilities: { kind: 'node', gpu: null, memoryBudgetMB: 0, throughput: { gflops: 1, backend: 'cpu' } },
    });
    await client.start();
    let coverage: ModelCoverage | undefined;
    client.signaling.on('models', (models) => (coverage = models.find((m) => m.model.modelId === spec.modelId)));
    const t0 = performance.now();
    client.signaling.send({ type: 'serve', model: spec });
    await new Promise<void>((resolve, reject) => {
      const check = setInterval(() => {
        if (coverage?.ready.every((r) => r >= 1)) {
          clearInterval(check);
          resolve();
        }
        if (performance.now() - t0 > 1_800_000) {
          clearInterval(check);
          reject(new Error(`layers not ready after 30 min: ${JSON.stringify(coverage?.ready)}`));
        }
      }, 100);
    });
    const loadS = (performance.now() - t0) / 1000;
    log(`every layer ready in ${loadS.toFixed(1)} s; placement: ${peers.map((p, i) => `peer ${i} ${p.served().join(' ') || '-'}`).join(', ')}`);

    head = await Head.load(checkpoint, { backend: 'cpu' });
    const chain = new RemoteChain({
      mesh: client, modelId: spec.modelId, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize,
      routes: signalingRoutes(client.signaling, spec.modelId), timeoutMs: 600_000,
    });
    try {
      // Single stream: decode tok/s from the first token to the last (a warm-up run first).
      const single = async (tokens: number) => {
        const at: number[] = [];
        await chain.generate(head!, prompt, { maxTokens: tokens + 1, temperature: 0, stopTokens: [], onToken: () => at.push(performance.now()) });
        return tokens / ((at.at(-1)! - at[0]!) / 1000);
      };
      await single(1);
      const decodeTokS = await single(decode);
      log(`single stream: ${decodeTokS.toFixed(3)} tok/s over ${decode} tokens`);

      // Concurrent sessions: the window opens when the last session has its first token (prefills done).
      // What the layers leave of each budget is all the KV room there is (client/grid/peer.ts).
      const room = peers.map((p) => {
        const layers = p.served().reduce((n, r) => n + Number(/, (\d+)/.exec(r)![1]) - Number(/\[(\d+)/.exec(r)![1]), 0);
        return Math.max(0, memoryMb - (layers * spec.layerBytes) / MB);
      });
      log(`KV room per peer: ${room.map((r) => `${r.toFixed(0)} MB`).join(', ')}`);
      const evictedBefore = peers.reduce((n, p) => n + p.count('ERR_SESSION_EVICTED'), 0);
      const heads = new HeadBatcher(head);
      const hops = new Set(peers.filter((p) => p.served().length > 0)).size;
      const first: number[] = [];
      const later: number[] = [];
      await Promise.all(Array.from({ length: SESSIONS }, (_, s) =>
        chain.generate(heads.session(`s${s}`, hops + 1), promptIds(4, config.vocabSize, 100 + s), {
          maxTokens: sessionDecode + 1, temperature: 0, stopTokens: [],
          onToken: (_t, step) => (step === 0 ? first.push(performance.now()) : later.push(performance.now())),
        })));
      const start = Math.max(...first);
      const counted = later.filter((t) => t > start).length;
      const sessionsTokS = counted / ((Math.max(...later) - start) / 1000);
      const evicted = peers.reduce((n, p) => n + p.count('ERR_SESSION_EVICTED'), 0) - evictedBefore;
      log(`${SESSIONS} sessions: ${sessionsTokS.toFixed(3)} tok/s aggregate (${counted} tokens after the last prefill; mean head batch ${(heads.stats.rows / Math.max(1, heads.stats.passes)).toFixed(2)}; ` +
        `${evicted} KV evictions${evicted ? ': the sessions outnumber the KV room, and each evicted one replays its tokens' : ''})`);
      return { loadS, decodeTokS, sessionsTokS, peakRssMb: peers.map((p) => p.peakRssMb()) };
    } finally {
      chain.close();
    }
  } finally {
    head?.destroy();
    client?.close();
    for (const p of peers) p.close();
    await files.close();
    await server.close();
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const layers = Number(process.env.AIGRID_BENCH_LAYERS ?? LLAMA3_8B.layers);
  const decode = Number(process.env.AIGRID_BENCH_DECODE ?? 8);
  const sessionDecode = Number(process.env.AIGRID_BENCH_SESSION_DECODE ?? 4);
  const shape = layers === LLAMA3_8B.layers ? LLAMA3_8B : { ...LLAMA3_8B, name: `${LLAMA3_8B.name}-first${layers}`, layers };
  const t0 = performance.now();
  log(pressureNote('before'));
  const path = randomGguf(shape, 'Q4_K_M', { log });
  const prompt = promptIds(8, shape.vocab);

  // Whether the peers would fit: the CPU backend may decode quantized blocks to f32 at load.
  const checkpoint = await openModelNode(path);
  const config = readConfig(checkpoint);
  const expansion = cpuExpansion();
  const layerBytes = expansion > 3 ? weightsPerLayer(config) * 4 : modelSpecFromCheckpoint(checkpoint, { source: 'probe', replication: 1 }).layerBytes;
  const headBytes = config.vocabSize * config.hiddenSize * 4 * (expansion > 3 ? 2 : 1.25); // f32 token table (+ an f32 LM head)
  const needed = config.numLayers * layerBytes + headBytes + (PEERS + 1) * 300 * MB;
  const fits = needed < 0.8 * totalmem();
  log(`CPU backend keeps ${expansion.toFixed(2)} bytes per quantized byte (${expansion > 3 ? 'decoded to f32 at load' : 'blocks kept'}); ` +
    `the grid needs about ${(needed / 2 ** 30).toFixed(1)} GiB, this machine has ${(totalmem() / 2 ** 30).toFixed(1)} GiB`);

  const llamaTokS = await llamaCppDecode(path, prompt, decode);
  let figures: GridFigures | undefined;
  if (fits) {
    figures = await grid(path, prompt, decode, sessionDecode);
  } else {
    log(`grid not run: ${config.numLayers} layers would not fit in memory while the CPU backend decodes quantized weights to f32; ` +
      'run it once the quantized CPU kernels keep the blocks, or try AIGRID_BENCH_LAYERS=4 for a slice');
  }
  console.table({
    'llama.cpp 2 threads, one process: decode tok/s': round(llamaTokS, 3),
    'grid: load s (serve to every layer ready)': round(figures?.loadS, 1),
    'grid: single-stream decode tok/s': round(figures?.decodeTokS, 3),
    [`grid: ${SESSIONS} sessions aggregate decode tok/s`]: round(figures?.sessionsTokS, 3),
    'grid: peak RSS per peer MB': figures ? figures.peakRssMb.map((m) => m.toFixed(0)).join(', ') : null,
  });
  log(pressureNote('after'));
  log(`${shape.name} Q4_K_M (${config.numLayers} layers); total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const result = {
    largeDecodeVsLlamaCpp: figures ? round(figures.decodeTokS / llamaTokS, 3) : null,
    large8SessionsTokS: figures ? round(figures.sessionsTokS, 3) : null,
    peakRssMBPerPeer: figures ? round(Math.max(...figures.peakRssMb), 0) : null,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(0);
}

await main();
