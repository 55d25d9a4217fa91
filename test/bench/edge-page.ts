// The browser side of bench:edge's page comparison (driven by edge-page-run.ts): greedy generation
// from one GGUF file over HTTP in a cross-origin-isolated Chromium page, by our CPU backend and by
// @wllama/wllama (llama.cpp compiled to WebAssembly), every token time-stamped where it is chosen.
// Ours runs in a dedicated worker made from this same module: a page's main thread may not block in
// Atomics.wait, which the CPU backend's kernel threads need (ggml-threads.ts), so there it would run
// on one thread. wllama runs llama.cpp in a worker of its own, driven from the page.
import { openModel } from '../../client/model/checkpoint/reader.ts';
import { CpuBackend } from '../../client/model/backend/cpu.ts';
import { GgmlCpuRuntime } from '../../client/model/backend/ggml-linear.ts';
import { Head } from '../../client/model/head.ts';
import { Shard } from '../../client/model/shard.ts';
import { timedGreedy } from './timed-greedy.ts';

export type PageRunnerKind = 'ours' | 'wllama';

export interface PageLoadRequest {
  runner: PageRunnerKind;
  /** The GGUF file's URL (a server that answers Range requests, with CORS). */
  ggufUrl: string;
  threads: number;
  /** wllama's esm folder (index.js, single-thread/ and multi-thread/wllama.wasm), with a trailing slash. */
  wllamaUrl: string;
  /** Positions a generation may reach (prompt and new tokens). */
  contextSize: number;
}

export interface PageLoaded {
  id: number;
  loadMs: number;
  /** How the runner runs: kernels and threads it got. */
  detail: string;
}

export interface PageGeneration {
  tokens: number[];
  /** at[0]: start; at[i + 1]: when token i was chosen (page or worker clock: only differences count). */
  at: number[];
}

export interface PageEnvironment {
  crossOriginIsolated: boolean;
  sharedArrayBuffer: boolean;
  cores: number;
  userAgent: string;
}

export interface EdgePageApi {
  environment(): PageEnvironment;
  load(request: PageLoadRequest): Promise<PageLoaded>;
  generate(id: number, prompt: number[], newTokens: number): Promise<PageGeneration>;
  close(id: number): Promise<void>;
}

interface PageRunner {
  generate(prompt: number[], newTokens: number): Promise<PageGeneration>;
  close(): Promise<void>;
}

// ---- ours: Head + Shard over every layer on the CPU backend, inside a worker ----

interface WorkerCall {
  seq: number;
  op: 'load' | 'generate' | 'close';
  args: unknown[];
}
interface WorkerReply {
  seq: number;
  value?: unknown;
  error?: string;
}

/** The model the worker holds (one per worker). */
let model: { head: Head; shard: Shard; backend: CpuBackend; runs: number } | undefined;

async function workerLoad(ggufUrl: string, threads: number, contextSize: number): Promise<{ loadMs: number; detail: string }> {
  const t0 = performance.now();
  const checkpoint = await openModel(ggufUrl, { cache: false });
  const runtime = await GgmlCpuRuntime.create({ threads });
  const backend = new CpuBackend(runtime, true);
  let head: Head | undefined;
  try {
    head = await Head.load(checkpoint, { backend });
    const shard = await Shard.load(checkpoint, { start: 0, end: head.config.numLayers, backend, maxSessionTokens: contextSize });
    model = { head, shard, backend, runs: 0 };
  } catch (err) {
    head?.destroy();
    backend.destroy();
    throw err;
  }
  const detail = `${runtime.simd ? 'WebAssembly SIMD kernels' : 'plain-JS kernels (no SIMD or no shared memory)'}, ${runtime.threads} thread(s)`;
  return { loadMs: performance.now() - t0, detail };
}

async function workerGenerate(prompt: number[], newTokens: number): Promise<PageGeneration> {
  if (!model) throw new Error('no model loaded');
  const { head, shard } = model;
  return timedGreedy(head, shard, `run-${model.runs++}`, prompt, newTokens);
}

function workerClose(): void {
  model?.shard.destroy();
  model?.head.destroy();
  model?.backend.destroy();
  model = undefined;
}

function serveWorker(): void {
  const scope = self as unknown as { onmessage: ((e: MessageEvent<WorkerCall>) => void) | null; postMessage(m: WorkerReply): void };
  // Calls run one at a time, in order.
  let queue = Promise.resolve();
  scope.onmessage = (e) => {
    const { seq, op, args } = e.data;
    queue = queue.then(async () => {
      try {
        const value = op === 'load'
          ? await workerLoad(args[0] as string, args[1] as number, args[2] as number)
          : op === 'generate' ? await workerGenerate(args[0] as number[], args[1] as number) : workerClose();
        scope.postMessage({ seq, value });
      } catch (err) {
        scope.postMessage({ seq, error: String((err as Error)?.stack ?? err).slice(0, 1000) });
      }
    });
  };
}

async function oursRunner(req: PageLoadRequest): Promise<PageRunner & { loadMs: number; detail: string }> {
  const worker = new Worker(new URL('./edge-page.ts', import.meta.url), { type: 'module' });
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let seq = 0;
  worker.onmessage = (e: MessageEvent<WorkerReply>) => {
    const p = pending.get(e.data.seq);
    pending.delete(e.data.seq);
    if (e.data.error !== undefined) p?.reject(new Error(e.data.error));
    else p?.resolve(e.data.value);
  };
  worker.onerror = (e) => {
    for (const p of pending.values()) p.reject(new Error(`ours: worker error: ${e.message}`));
    pending.clear();
  };
  const call = <T>(op: WorkerCall['op'], ...args: unknown[]) => new Promise<T>((resolve, reject) => {
    const n = seq++;
    pending.set(n, { resolve: resolve as (v: unknown) => void, reject });
    worker.postMessage({ seq: n, op, args } satisfies WorkerCall);
  });
  try {
    const { loadMs, detail } = await call<{ loadMs: number; detail: string }>('load', req.ggufUrl, req.threads, req.contextSize);
    return {
      loadMs, detail,
      generate: (prompt, newTokens) => call<PageGeneration>('generate', prompt, newTokens),
      async close() {
        await call('close');
        worker.terminate();
      },
    };
  } catch (err) {
    worker.terminate();
    throw err;
  }
}

// ---- @wllama/wllama: the parts of its (2.x) API used here (typed here: the project does not install it) ----

interface WllamaInstance {
  loadModel(blobs: Blob[], config: Record<string, unknown>): Promise<void>;
  samplingInit(config: Record<string, unknown>, pastTokens?: number[]): Promise<void>;
  samplingSample(): Promise<{ token: number }>;
  samplingAccept(tokens: number[]): Promise<void>;
  decode(tokens: number[], options: Record<string, unknown>): Promise<{ nPast: number }>;
  kvClear(): Promise<void>;
  isMultithread(): boolean;
  getNumThreads(): number;
  exit(): Promise<void>;
}
interface WllamaModule {
  Wllama: new (paths: Record<string, string>, config: Record<string, unknown>) => WllamaInstance;
}

const quiet = { debug() {}, log() {}, warn: (...a: unknown[]) => console.warn(...a), error: (...a: unknown[]) => console.error(...a) };

async function wllamaRunner(req: PageLoadRequest): Promise<PageRunner & { loadMs: number; detail: string }> {
  const { Wllama } = (await import(/* @vite-ignore */ `${req.wllamaUrl}index.js`)) as WllamaModule;
  const t0 = performance.now();
  // Its multi-thread build where the page is cross-origin isolated and threads > 1, else the single-thread one.
  const wllama = new Wllama(
    { 'single-thread/wllama.wasm': `${req.wllamaUrl}single-thread/wllama.wasm`, 'multi-thread/wllama.wasm': `${req.wllamaUrl}multi-thread/wllama.wasm` },
    { suppressNativeLog: true, logger: quiet },
  );
  const response = await fetch(req.ggufUrl);
  if (!response.ok) throw new Error(`wllama: GET ${req.ggufUrl}: ${response.status}`);
  await wllama.loadModel([await response.blob()], { n_threads: req.threads, n_ctx: req.contextSize, n_batch: req.contextSize, seed: 1 });
  const loadMs = performance.now() - t0;
  const detail = `${wllama.isMultithread() ? 'multi-thread' : 'single-thread'} build, ${wllama.getNumThreads()} thread(s)`;
  return {
    loadMs, detail,
    // Its createCompletion's loop, on token ids (no tokenizer): greedy (temperature 0, top-k 1),
    // end-of-generation tokens not special, the cache cleared first.
    async generate(prompt, newTokens) {
      const at = [performance.now()];
      const tokens: number[] = [];
      await wllama.samplingInit({ temp: 0, top_k: 1 });
      await wllama.kvClear();
      await wllama.samplingAccept(prompt);
      await wllama.decode(prompt, {});
      for (;;) {
        const { token } = await wllama.samplingSample();
        tokens.push(token);
        at.push(performance.now());
        if (tokens.length >= newTokens) break;
        await wllama.samplingAccept([token]);
        await wllama.decode([token], {});
      }
      return { tokens, at };
    },
    close: () => wllama.exit(),
  };
}

// ---- the page's API ----

function servePage(): void {
  const runners = new Map<number, PageRunner>();
  let next = 0;
  const api: EdgePageApi = {
    environment: () => ({
      crossOriginIsolated: globalThis.crossOriginIsolated === true,
      sharedArrayBuffer: typeof SharedArrayBuffer !== 'undefined',
      cores: navigator.hardwareConcurrency,
      userAgent: navigator.userAgent,
    }),
    async load(req) {
      const runner = req.runner === 'ours' ? await oursRunner(req) : await wllamaRunner(req);
      const id = next++;
      runners.set(id, runner);
      return { id, loadMs: runner.loadMs, detail: runner.detail };
    },
    generate(id, prompt, newTokens) {
      const runner = runners.get(id);
      if (!runner) throw new Error(`no runner ${id}`);
      return runner.generate(prompt, newTokens);
    },
    async close(id) {
      const runner = runners.get(id);
      runners.delete(id);
      await runner?.close();
    },
  };
  (window as unknown as { edge: EdgePageApi }).edge = api;
  document.title = 'ready';
}

if (typeof document === 'undefined') serveWorker();
else servePage();
