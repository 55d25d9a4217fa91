// npm run bench:edge — one process on the CPU, side by side in one run: greedy decode and prefill
// tokens/s of our CPU backend (Head + Shard over every layer, from a GGUF file) against llama.cpp
// (node-llama-cpp 3.21.1, its prebuilt CPU binary) on the same file, with 1 and 2 threads. Random
// weights in the shapes of SmolLM2-135M and Llama-3.2-1B, each as Q8_0 and Q4_K_M (gguf-random.ts).
// Decode: a 16-token prompt, then 32 tokens, timed from the first generated token to the last;
// prefill: a 128-token prompt to its first token. Medians of AIGRID_BENCH_RUNS runs (default 3).
// On the SmolLM2 shape in Q8_0, also @huggingface/transformers (onnxruntime-node) on an ONNX export
// of the same weights, dequantized to f32. Each runs with 1 and 2 threads; ratios are ours / llama.cpp at the same thread count (RESULT: at
// every core). Last line: RESULT {json}, geometric means over the shapes (null where not measured).
// Environment: AIGRID_BENCH_SHAPES (comma list of smollm2-135m, llama3.2-1b), AIGRID_BENCH_TYPES
// (Q8_0, Q4_K_M), AIGRID_BENCH_RUNS, AIGRID_BENCH_DECODE (32), AIGRID_BENCH_PREFILL (128).
// node-llama-cpp is not a dependency of the project: it is installed on first use into
// test/.fixtures/bench/llama-cpp (scripts off, so nothing is downloaded or built beyond the npm
// packages), leaving the project's node_modules and lockfile alone.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openModelNode } from '../../client/model/checkpoint/node.ts';
import { CpuBackend } from '../../client/model/backend/cpu.ts';
import { Head } from '../../client/model/head.ts';
import { Shard } from '../../client/model/shard.ts';
import { refConfigFromJson } from '../fixtures/hf-config.ts';
import { llamaOnnx } from '../fixtures/onnx-llama.ts';
import { BENCH_DIR, randomGguf, type LlamaShape, type RandomGgufType } from './gguf-random.ts';

export const LLAMA_CPP_VERSION = '3.21.1';
const LLAMA_CPP_PREFIX = join(BENCH_DIR, 'llama-cpp');

export const SMOLLM2_135M: LlamaShape = {
  name: 'smollm2-135m', layers: 30, hidden: 576, heads: 9, kvHeads: 3, intermediate: 1536, vocab: 49152, tied: true,
  ropeTheta: 100000, contextLength: 8192, pre: 'smollm',
};
export const LLAMA32_1B: LlamaShape = {
  name: 'llama3.2-1b', layers: 16, hidden: 2048, heads: 32, kvHeads: 8, intermediate: 8192, vocab: 128256, tied: true,
  ropeTheta: 500000, llama3Rope: true, contextLength: 131072, headDim: 64, pre: 'llama-bpe',
};

// ---- llama.cpp: the parts of node-llama-cpp's API used here (typed here: the project does not install it) ----

export interface LlamaSequence {
  evaluate(tokens: number[], options?: { temperature?: number; yieldEogToken?: boolean }): AsyncGenerator<number, void, void>;
  clearHistory(): Promise<void>;
}
export interface LlamaContext {
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}
export interface LlamaModel {
  createContext(options: { contextSize: number; batchSize: number; threads: number }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
export interface Llama {
  loadModel(options: { modelPath: string }): Promise<LlamaModel>;
  dispose(): Promise<void>;
}
interface NodeLlamaCpp {
  getLlama(options: { gpu: false; build: 'never'; logLevel: string }): Promise<Llama>;
}

function installedVersion(dir: string): string | undefined {
  const pkg = join(dir, 'node_modules', 'node-llama-cpp', 'package.json');
  return existsSync(pkg) ? (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version : undefined;
}

/** llama.cpp's CPU build through node-llama-cpp, installed on first use (the project's copy when it has this version). */
export async function loadLlamaCpp(log: (line: string) => void): Promise<Llama> {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  let dir = installedVersion(root) === LLAMA_CPP_VERSION ? root : LLAMA_CPP_PREFIX;
  if (installedVersion(dir) !== LLAMA_CPP_VERSION) {
    dir = LLAMA_CPP_PREFIX;
    // Only the binary package of this platform: the CUDA and Vulkan ones are hundreds of MB.
    const platform = { linux: 'linux', darwin: 'mac', win32: 'win' }[process.platform as string];
    const binary = platform && process.arch === 'x64' ? `@node-llama-cpp/${platform}-x64@${LLAMA_CPP_VERSION}` : undefined;
    const args = ['install', '--prefix', dir, '--no-save', '--no-audit', '--no-fund', '--ignore-scripts', ...(binary ? ['--omit=optional', binary] : []), `node-llama-cpp@${LLAMA_CPP_VERSION}`];
    log(`installing node-llama-cpp ${LLAMA_CPP_VERSION} into ${dir} (npm ${args.join(' ')}) ...`);
    const npm = spawnSync('npm', args, { stdio: 'inherit', shell: process.platform === 'win32' });
    if (npm.status !== 0 || installedVersion(dir) !== LLAMA_CPP_VERSION) {
      throw new Error(`could not install node-llama-cpp ${LLAMA_CPP_VERSION}; install it by hand: npm i --no-save node-llama-cpp@${LLAMA_CPP_VERSION}`);
    }
  }
  const entry = pathToFileURL(join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href;
  const mod = (await import(entry)) as NodeLlamaCpp;
  // Its prebuilt binary only: never a download or a build from source.
  return mod.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
}

// ---- runners: greedy generation with a timestamp per token ----

export interface Generation {
  tokens: number[];
  /** at[0]: start; at[i + 1]: when token i was chosen. */
  at: number[];
}

export interface Runner {
  generate(prompt: readonly number[], newTokens: number): Promise<Generation>;
  close(): Promise<void>;
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Our runtime in this process: the head and one shard of every layer on one CPU backend of `threads` threads. */
export async function oursRunner(path: string, threads: number): Promise<Runner> {
  const checkpoint = await openModelNode(path);
  const backend = await CpuBackend.create({ threads });
  let head: Head | undefined;
  let shard: Shard | undefined;
  try {
    head = await Head.load(checkpoint, { backend });
    shard = await Shard.load(checkpoint, { start: 0, end: head.config.numLayers, backend, maxSessionTokens: 512 });
  } catch (err) {
    head?.destroy();
    backend.destroy();
    throw err;
  }
  const [h, s] = [head, shard];
  let runs = 0;
  return {
    async generate(prompt, newTokens) {
      const session = `run-${runs++}`;
      const at = [performance.now()];
      const tokens: number[] = [];
      let input = [...prompt];
      let pos = 0;
      try {
        while (tokens.length < newTokens) {
          const positions = Uint32Array.from(input, (_, i) => pos + i);
          const hidden = await s.forward(await h.embed(Uint32Array.from(input), positions), positions, session);
          tokens.push(argmax(await h.logits(hidden, input.length)));
          at.push(performance.now());
          pos += input.length;
          input = [tokens.at(-1)!];
        }
      } finally {
        s.release(session);
      }
      return { tokens, at };
    },
    async close() {
      s.destroy();
      h.destroy();
      backend.destroy();
    },
  };
}

/** llama.cpp on one context sequence with `threads` threads; greedy, end-of-generation tokens ignored. */
export async function llamaCppRunner(model: LlamaModel, threads: number, contextSize = 512): Promise<Runner> {
  const context = await model.createContext({ contextSize, batchSize: contextSize, threads });
  const sequence = context.getSequence();
  return {
    async generate(prompt, newTokens) {
      await sequence.clearHistory();
      const at = [performance.now()];
      const tokens: number[] = [];
      for await (const token of sequence.evaluate([...prompt], { temperature: 0, yieldEogToken: true })) {
        tokens.push(token);
        at.push(performance.now());
        if (tokens.length >= newTokens) break;
      }
      return { tokens, at };
    },
    close: () => context.dispose(),
  };
}

// ---- transformers.js (onnxruntime-node, CPU) on an ONNX export of the same weights ----

/**
 * The GGUF's weights as our reader returns them (dequantized, in the checkpoint's layout) exported
 * as an ONNX decoder (fixtures/onnx-llama.ts) in a folder transformers.js loads; made once, beside
 * the file. Returns the folder's parent and name.
 */
async function onnxExport(path: string): Promise<{ root: string; name: string }> {
  const root = join(BENCH_DIR, 'onnx');
  const name = basename(path, '.gguf');
  const dir = join(root, name);
  const model = join(dir, 'onnx', 'model.onnx');
  if (existsSync(model)) return { root, name };
  // Exports of files since replaced (a newer generator) go: each is half a gigabyte.
  if (existsSync(root)) for (const d of readdirSync(root)) if (!existsSync(join(BENCH_DIR, `${d}.gguf`))) rmSync(join(root, d), { recursive: true, force: true });
  const checkpoint = await openModelNode(path);
  const weights = await checkpoint.readFloat32(checkpoint.listTensors());
  const tensors = new Map([...weights].map(([key, t]) => [key, { shape: t.shape, data: t.data }]));
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(checkpoint.config, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: checkpoint.config.bos_token_id, eos_token_id: checkpoint.config.eos_token_id }));
  writeFileSync(`${model}.part`, llamaOnnx(refConfigFromJson(checkpoint.config), tensors));
  renameSync(`${model}.part`, model);
  return { root, name };
}

/** transformers.js on the ONNX export, greedy, with `threads` intra-op threads. */
export async function transformersRunner(path: string, threads: number): Promise<Runner> {
  const { root, name } = await onnxExport(path);
  const { AutoModelForCausalLM, BaseStreamer, env, Tensor } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = `${root}/`;
  const model = await AutoModelForCausalLM.from_pretrained(name, {
    device: 'cpu', dtype: 'fp32', session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
  });
  /** Times each new token; the first call carries the prompt. */
  class Stamps extends BaseStreamer {
    at: number[] = [];
    tokens: number[] = [];
    private prompt = true;
    override put(value: bigint[][]): void {
      if (this.prompt) {
        this.prompt = false;
        return;
      }
      this.at.push(performance.now());
      this.tokens.push(Number(value[0]![0]!));
    }
    override end(): void {}
  }
  return {
    async generate(prompt, newTokens) {
      const n = prompt.length;
      const stamps = new Stamps();
      const start = performance.now();
      await model.generate({
        input_ids: new Tensor('int64', BigInt64Array.from(prompt, BigInt), [1, n]),
        attention_mask: new Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
        max_new_tokens: newTokens, min_new_tokens: newTokens, do_sample: false, streamer: stamps as never,
      } as never);
      return { tokens: stamps.tokens, at: [start, ...stamps.at] };
    },
    async close() {
      await model.dispose();
    },
  };
}

// ---- measurement ----

/**
 * The share of the last 10 s in which runnable tasks waited for a CPU (Linux PSI), as a percentage;
 * undefined elsewhere. Other work on the machine hurts multi-threaded runs most: each step waits
 * at a barrier for its slowest thread.
 */
export function cpuPressure(): number | undefined {
  try {
    const m = /^some avg10=([\d.]+)/m.exec(readFileSync('/proc/pressure/cpu', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** A warning line when other processes compete for the CPU (figures with 2+ threads suffer most). */
export function pressureNote(when: string): string {
  const p = cpuPressure();
  if (p === undefined) return `${when}: CPU pressure unknown (no /proc/pressure/cpu)`;
  return `${when}: CPU pressure ${p.toFixed(0)}% (tasks waiting for a core)${p > 20 ? ' — the machine is busy with other work: multi-threaded figures are unreliable' : ''}`;
}

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
export const geomean = (xs: readonly number[]): number | null => (xs.length ? Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length) : null);
export const round = (x: number | null | undefined, d = 2): number | null => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(d)));

/** Prompt ids spread over the vocabulary below the special tokens (the same for every runner). */
export const promptIds = (n: number, vocab: number, salt = 0): number[] => Array.from({ length: n }, (_, i) => (7 + (i + salt) * 7919) % (vocab - 8));

export interface Figures {
  decodeTokS: number;
  prefillTokS: number;
  /** CPU time over wall time while decoding: the cores the runner kept busy. */
  decodeCores: number;
  tokens: number[];
}

/**
 * Decode tok/s (the tokens after the first, over their span) and prefill tok/s (prompt to first
 * token) of each runner, medians of `runs`. The runners take turns run by run, so load from
 * elsewhere on the machine falls on all of them alike.
 */
export async function measureTurns(runners: readonly Runner[], vocab: number, runs: number, decode: number, prefill: number): Promise<Figures[]> {
  const shortPrompt = promptIds(16, vocab);
  for (const runner of runners) await runner.generate(shortPrompt, 2); // warm-up: first-pass allocations, JIT, threads
  const decodes = runners.map((): number[] => []);
  const cores = runners.map((): number[] => []);
  const prefills = runners.map((): number[] => []);
  const tokens = runners.map((): number[] => []);
  for (let r = 0; r < runs; r++) {
    for (const [i, runner] of runners.entries()) {
      const cpu = process.cpuUsage();
      const g = await runner.generate(shortPrompt, decode + 1);
      const used = process.cpuUsage(cpu);
      decodes[i]!.push(decode / ((g.at.at(-1)! - g.at[1]!) / 1000));
      cores[i]!.push((used.user + used.system) / 1000 / (g.at.at(-1)! - g.at[0]!));
      tokens[i] = g.tokens;
      const p = await runner.generate(promptIds(prefill, vocab, 1 + r), 1);
      prefills[i]!.push(prefill / ((p.at[1]! - p.at[0]!) / 1000));
    }
  }
  return runners.map((_, i) => ({ decodeTokS: median(decodes[i]!), prefillTokS: median(prefills[i]!), decodeCores: median(cores[i]!), tokens: tokens[i]! }));
}

/** How many leading tokens two greedy runs share (quantized dot products differ, so they part at some point). */
const agreement = (a: readonly number[], b: readonly number[]) => {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
};

interface Row {
  shape: string;
  type: RandomGgufType;
  runner: string;
  load_s: number | null;
  prefill_tok_s: number | null;
  decode_tok_s: number | null;
  decode_cores_busy: number | null;
  same_tokens_as_ours: string;
}

async function main(): Promise<void> {
  const runs = Math.max(1, Number(process.env.AIGRID_BENCH_RUNS ?? 3));
  const decode = Number(process.env.AIGRID_BENCH_DECODE ?? 32);
  const prefill = Number(process.env.AIGRID_BENCH_PREFILL ?? 128);
  const wantedShapes = (process.env.AIGRID_BENCH_SHAPES ?? 'smollm2-135m,llama3.2-1b').split(',');
  const shapes = [SMOLLM2_135M, LLAMA32_1B].filter((s) => wantedShapes.includes(s.name));
  const types = (process.env.AIGRID_BENCH_TYPES ?? 'Q8_0,Q4_K_M').split(',') as RandomGgufType[];
  const cores = availableParallelism();
  const threadCounts = [...new Set([1, 2, cores])].filter((t) => t <= Math.max(2, cores));
  const log = (line: string) => console.log(line);
  const t0 = performance.now();

  log(pressureNote('before'));
  const llama = await loadLlamaCpp(log);
  log(`llama.cpp: node-llama-cpp ${LLAMA_CPP_VERSION}, prebuilt CPU binary; ${cores} cores; every runner with ${threadCounts.join(' and ')} thread(s)`);
  const rows: Row[] = [];
  const ratios = { decode: new Map<string, number[]>(), prefill: new Map<number, number[]>() };
  for (const shape of shapes) {
    for (const type of types) {
      const path = randomGguf(shape, type, { log });
      const tag = `${shape.name} ${type}`;
      log(`\n${tag}: prompt 16 + ${decode} decoded tokens, prefill ${prefill} tokens, median of ${runs} runs`);
      const named: { name: string; loadS: number; runner: Runner }[] = [];
      const oursFailed = (err: unknown) => {
        log(`ours cannot run ${tag}: ${(err as Error).message.slice(0, 300)}`);
        rows.push({ shape: shape.name, type, runner: 'ours (cpu)', load_s: null, prefill_tok_s: null, decode_tok_s: null, decode_cores_busy: null, same_tokens_as_ours: 'failed' });
      };
      for (const threads of threadCounts) {
        const loadStart = performance.now();
        try {
          const runner = await oursRunner(path, threads);
          named.push({ name: `ours ${threads}t`, loadS: (performance.now() - loadStart) / 1000, runner });
        } catch (err) {
          oursFailed(err);
          break;
        }
      }
      // transformers.js on the SmolLM2 shape's Q8_0 weights (dequantized to f32: ONNX has no GGUF blocks).
      if (shape === SMOLLM2_135M && type === 'Q8_0' && named.length) {
        for (const threads of threadCounts) {
          const loadStart = performance.now();
          try {
            const runner = await transformersRunner(path, threads);
            named.push({ name: `transformers.js ${threads}t`, loadS: (performance.now() - loadStart) / 1000, runner });
          } catch (err) {
            log(`transformers.js cannot run ${tag}: ${(err as Error).message.slice(0, 300)}`);
            break;
          }
        }
      }
      const loadStart = performance.now();
      const model = await llama.loadModel({ modelPath: path });
      const llamaLoadS = (performance.now() - loadStart) / 1000;
      try {
        for (const threads of threadCounts) named.push({ name: `llama.cpp ${threads}t`, loadS: llamaLoadS, runner: await llamaCppRunner(model, threads) });
        const figures = await measureTurns(named.map((n) => n.runner), shape.vocab, runs, decode, prefill);
        const byName = new Map(named.map((n, i) => [n.name, figures[i]!]));
        const reference = byName.get(`ours ${threadCounts[0]}t`);
        for (const [i, n] of named.entries()) {
          const f = figures[i]!;
          const same = reference && f !== reference ? `${agreement(reference.tokens, f.tokens)}/${f.tokens.length}` : '-';
          rows.push({ shape: shape.name, type, runner: n.name, load_s: round(n.loadS, 1), prefill_tok_s: round(f.prefillTokS), decode_tok_s: round(f.decodeTokS), decode_cores_busy: round(f.decodeCores), same_tokens_as_ours: same });
        }
        // Same thread count on both sides.
        for (const threads of threadCounts) {
          const onnx = byName.get(`transformers.js ${threads}t`);
          const mine = byName.get(`ours ${threads}t`);
          if (onnx && mine) log(`${tag}, ${threads} thread(s): ours / transformers.js (f32 ONNX): decode ${(mine.decodeTokS / onnx.decodeTokS).toFixed(3)}, prefill ${(mine.prefillTokS / onnx.prefillTokS).toFixed(3)}`);
        }
        for (const threads of threadCounts) {
          const ours = byName.get(`ours ${threads}t`);
          const anchor = byName.get(`llama.cpp ${threads}t`);
          if (!ours || !anchor) continue;
          const key = `${type} ${threads}`;
          ratios.decode.set(key, [...(ratios.decode.get(key) ?? []), ours.decodeTokS / anchor.decodeTokS]);
          ratios.prefill.set(threads, [...(ratios.prefill.get(threads) ?? []), ours.prefillTokS / anchor.prefillTokS]);
          log(`${tag}, ${threads} thread(s): ours / llama.cpp: decode ${(ours.decodeTokS / anchor.decodeTokS).toFixed(3)}, prefill ${(ours.prefillTokS / anchor.prefillTokS).toFixed(3)}`);
        }
      } finally {
        for (const n of named) await n.runner.close();
        await model.dispose();
      }
    }
  }
  await llama.dispose();

  console.log('');
  console.table(rows);
  if (!rows.some((r) => r.runner.startsWith('transformers.js'))) log('transformers.js (onnxruntime CPU): not measured (it runs on the SmolLM2 shape in Q8_0 only)');
  log('@wllama/wllama in Chromium: not measured');
  log(pressureNote('after'));
  log(`total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const at = (threads: number) => ({
    decodeVsLlamaCppQ8: round(geomean(ratios.decode.get(`Q8_0 ${threads}`) ?? []), 3),
    decodeVsLlamaCppQ4: round(geomean(ratios.decode.get(`Q4_K_M ${threads}`) ?? []), 3),
    prefillVsLlamaCpp: round(geomean(ratios.prefill.get(threads) ?? []), 3),
  });
  for (const threads of threadCounts) log(`ours / llama.cpp with ${threads} thread(s), geometric means over the shapes: ${JSON.stringify(at(threads))}`);
  // The headline: both sides on every core.
  const result = { ...at(Math.max(...threadCounts)), pageDecodeVsWllama: null };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
