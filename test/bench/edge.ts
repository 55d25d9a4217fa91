// npm run bench:edge — one process on the CPU, side by side in one run: greedy decode and prefill
// tokens/s of our CPU backend (Head + Shard over every layer, from a GGUF file) against llama.cpp
// (node-llama-cpp 3.21.1, its prebuilt CPU binary) on the same file, with 1 and 2 threads. Random
// weights in the shapes of SmolLM2-135M and Llama-3.2-1B, each as Q8_0 and Q4_K_M (gguf-random.ts).
// Decode: a 16-token prompt, then 32 tokens, timed from the first generated token to the last;
// prefill: a 128-token prompt to its first token. Medians of AIGRID_BENCH_RUNS runs (default 3).
// On the SmolLM2 shape in Q8_0, also @huggingface/transformers (onnxruntime-node) on an ONNX export
// of the same weights, dequantized to f32. Each runs with 1 and 2 threads; ratios are ours / llama.cpp at the same thread count (RESULT: at
// every core). Then, in one Chromium page served cross-origin isolated (edge-page-run.ts,
// edge-page.ts), the same decode and prefill of our CPU backend (WebAssembly SIMD kernels and
// worker threads, in a worker, the file over HTTP Range requests) against @wllama/wllama 2.3.7
// (llama.cpp compiled to WebAssembly, its multi-thread build) on the SmolLM2 shape's files, each
// type, 1 and 2 threads, with how many greedy tokens the two share.
// Last line: RESULT {json}, geometric means over the shapes (null where not measured);
// pageDecodeVsWllama: ours / wllama decode in the page, geometric mean over the types, at the highest
// thread count both ran.
// Environment: AIGRID_BENCH_SHAPES (comma list of smollm2-135m, llama3.2-1b), AIGRID_BENCH_TYPES
// (Q8_0, Q4_K_M), AIGRID_BENCH_RUNS, AIGRID_BENCH_DECODE (32), AIGRID_BENCH_PREFILL (128),
// AIGRID_BENCH_PAGE=0 (no page comparison).
// node-llama-cpp and @wllama/wllama are not dependencies of the project: each is installed on first
// use into test/.fixtures/bench/llama-cpp and test/.fixtures/bench/wllama (bench-packages.ts; scripts
// off, so nothing is downloaded or built beyond the npm packages), leaving the project's
// node_modules and lockfile alone.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openModelNode } from '../../client/model/checkpoint/node.ts';
import { CpuBackend } from '../../client/model/backend/cpu.ts';
import { Head } from '../../client/model/head.ts';
import { Shard } from '../../client/model/shard.ts';
import { refConfigFromJson } from '../fixtures/hf-config.ts';
import { llamaOnnx } from '../fixtures/onnx-llama.ts';
import { installOnFirstUse } from './bench-packages.ts';
import { agreement, geomean, measureTurns, pressureNote, round, type Runner } from './edge-measure.ts';
import type { PageBenchResult } from './edge-page-run.ts';
import { timedGreedy } from './timed-greedy.ts';
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

/** llama.cpp's CPU build through node-llama-cpp, installed on first use (the project's copy when it has this version). */
export async function loadLlamaCpp(log: (line: string) => void): Promise<Llama> {
  // Only the binary package of this platform: the CUDA and Vulkan ones are hundreds of MB.
  const platform = { linux: 'linux', darwin: 'mac', win32: 'win' }[process.platform as string];
  const binary = platform && process.arch === 'x64' ? `@node-llama-cpp/${platform}-x64@${LLAMA_CPP_VERSION}` : undefined;
  const dir = installOnFirstUse(
    { name: 'node-llama-cpp', version: LLAMA_CPP_VERSION, prefix: LLAMA_CPP_PREFIX, preferProject: true, extraArgs: binary ? ['--omit=optional', binary] : [] },
    log,
  );
  const entry = pathToFileURL(join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js')).href;
  const mod = (await import(entry)) as NodeLlamaCpp;
  // Its prebuilt binary only: never a download or a build from source.
  return mod.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
}

// ---- runners ----

// The measurement helpers live in edge-measure.ts (the page comparison uses them too); large.ts imports them from here.
export { agreement, cpuPressure, geomean, measureTurns, median, pressureNote, promptIds, round, type Figures, type Generation, type Runner } from './edge-measure.ts';

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
    generate: (prompt, newTokens) => timedGreedy(h, s, `run-${runs++}`, prompt, newTokens),
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

  // In a Chromium page: ours against wllama on the SmolLM2 shape's files.
  // Loaded here, not at the top: it brings vite and puppeteer, which large.ts (importing this file) does not need.
  const { runPageBench, WLLAMA_VERSION } = await import('./edge-page-run.ts');
  let page: PageBenchResult | undefined;
  let pageNote = '';
  if (process.env.AIGRID_BENCH_PAGE === '0') pageNote = 'skipped (AIGRID_BENCH_PAGE=0)';
  else if (!shapes.includes(SMOLLM2_135M)) pageNote = 'not measured (it runs on the SmolLM2 shape only)';
  else {
    try {
      page = await runPageBench({
        shape: SMOLLM2_135M.name, files: types.map((type) => ({ type, path: randomGguf(SMOLLM2_135M, type, { log }), vocab: SMOLLM2_135M.vocab })),
        threadCounts, runs, decode, prefill, log,
      });
    } catch (err) {
      pageNote = `failed: ${(err as Error).message.split('\n')[0]!.slice(0, 300)}`;
    }
  }
  // The highest thread count at which both ran, and the ratio there per type.
  const pageThreads = page && page.decodeRatios.size ? Math.max(...page.decodeRatios.keys()) : undefined;
  const pageRatios = pageThreads ? [...page!.decodeRatios.get(pageThreads)!.values()] : [];

  console.log('');
  console.table(rows);
  if (page?.rows.length) console.table(page.rows);
  if (!rows.some((r) => r.runner.startsWith('transformers.js'))) log('transformers.js (onnxruntime CPU): not measured (it runs on the SmolLM2 shape in Q8_0 only)');
  if (pageNote) log(`@wllama/wllama in Chromium: ${pageNote}`);
  else if (!pageRatios.length) log('@wllama/wllama in Chromium: no type ran on both sides');
  else {
    if (!page!.crossOriginIsolated) log('@wllama/wllama in Chromium: the page was not cross-origin isolated (single-threaded, no SIMD shared memory): figures are not representative');
    for (const [threads, byType] of [...page!.decodeRatios].sort((a, b) => a[0] - b[0])) {
      log(`ours / wllama ${WLLAMA_VERSION} in Chromium with ${threads} thread(s), decode: ${[...byType].map(([type, r]) => `${type} ${r.toFixed(3)}`).join(', ')}`);
    }
  }
  log(pressureNote('after'));
  log(`total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const at = (threads: number) => ({
    decodeVsLlamaCppQ8: round(geomean(ratios.decode.get(`Q8_0 ${threads}`) ?? []), 3),
    decodeVsLlamaCppQ4: round(geomean(ratios.decode.get(`Q4_K_M ${threads}`) ?? []), 3),
    prefillVsLlamaCpp: round(geomean(ratios.prefill.get(threads) ?? []), 3),
  });
  for (const threads of threadCounts) log(`ours / llama.cpp with ${threads} thread(s), geometric means over the shapes: ${JSON.stringify(at(threads))}`);
  // The headline: both sides on every core.
  // pageDecodeVsWllama: ours / wllama decode in the page, geometric mean over the types, at the highest thread count both ran.
  const result = { ...at(Math.max(...threadCounts)), pageDecodeVsWllama: round(geomean(pageRatios), 3) };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
