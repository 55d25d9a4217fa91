// The browser side of bench:model: greedy prefill and decode of one model through our runtime
// (Head + Shard [0, n) on WebGPU, weights over HTTP) and through @huggingface/transformers on the
// same weights' ONNX export (WebGPU and single-threaded wasm), one after the other in this page.
import { AutoModelForCausalLM, BaseStreamer, env, Tensor } from '@huggingface/transformers';
import { openCheckpoint } from '../../client/model/checkpoint/reader.ts';
import { createBackend } from '../../client/model/backend/select.ts';
import { Head } from '../../client/model/head.ts';
import { Shard } from '../../client/model/shard.ts';
import { GpuContext } from '../../kernels/context.ts';

export interface ModelBenchRequest {
  /** Base URL of the folder that holds the model folders (trailing slash). */
  modelsUrl: string;
  name: string;
  prompt: number[];
  decodeTokens: number;
  runners: Runner[];
}

export type Runner = 'ours-webgpu' | 'transformers.js-webgpu' | 'transformers.js-wasm';

export interface ModelBenchRow {
  runner: Runner;
  loadMs: number;
  prefillMs: number;
  /** Mean time per decode step. */
  decodeMs: number;
  tokens: number[];
  error?: string;
}

const argmax = (v: Float32Array) => {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
};

let ctxPromise: Promise<GpuContext> | null = null;

async function ours(req: ModelBenchRequest): Promise<ModelBenchRow> {
  ctxPromise ??= GpuContext.create();
  const t0 = performance.now();
  const backend = await createBackend('webgpu', { gpu: await ctxPromise });
  const reader = await openCheckpoint(`${req.modelsUrl}${req.name}/`, { cache: false });
  const head = await Head.load(reader, { backend });
  const shard = await Shard.load(reader, { start: 0, end: head.config.numLayers, backend });
  const loadMs = performance.now() - t0;
  const step = async (ids: number[], start: number, session: string) => {
    const positions = Uint32Array.from(ids, (_, i) => start + i);
    const hidden = await shard.forward(await head.embed(Uint32Array.from(ids), positions), positions, session);
    return argmax(await head.logits(hidden, ids.length));
  };
  try {
    // Warm-up: pipelines and first allocations.
    await step(req.prompt, 0, 'warm');
    await step([1], req.prompt.length, 'warm');
    shard.release('warm');
    const p0 = performance.now();
    const tokens = [await step(req.prompt, 0, 'run')];
    const p1 = performance.now();
    for (let i = 0; i < req.decodeTokens; i++) tokens.push(await step([tokens.at(-1)!], req.prompt.length + i, 'run'));
    const p2 = performance.now();
    shard.release('run');
    return { runner: 'ours-webgpu', loadMs, prefillMs: p1 - p0, decodeMs: (p2 - p1) / req.decodeTokens, tokens };
  } finally {
    shard.destroy();
    head.destroy();
    backend.destroy();
  }
}

class Stamps extends BaseStreamer {
  at: number[] = [];
  tokens: number[] = [];
  override put(value: bigint[][]): void {
    this.at.push(performance.now());
    if (this.at.length > 1) this.tokens.push(Number(value[0]![0]!));
  }
  override end(): void {}
}

async function transformers(req: ModelBenchRequest, device: 'webgpu' | 'wasm'): Promise<ModelBenchRow> {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = req.modelsUrl;
  env.useBrowserCache = false;
  env.useWasmCache = false;
  const onnx = env.backends.onnx as { wasm?: { wasmPaths?: unknown; numThreads?: number } };
  if (onnx.wasm) {
    onnx.wasm.wasmPaths = '/node_modules/@huggingface/transformers/node_modules/onnxruntime-web/dist/';
    onnx.wasm.numThreads = 1;
  }
  const t0 = performance.now();
  const model = await AutoModelForCausalLM.from_pretrained(req.name, { device, dtype: 'fp32' });
  const loadMs = performance.now() - t0;
  const n = req.prompt.length;
  const inputs = {
    input_ids: new Tensor('int64', BigInt64Array.from(req.prompt, BigInt), [1, n]),
    attention_mask: new Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
  };
  const run = async (newTokens: number) => {
    const stamps = new Stamps();
    await model.generate({ ...inputs, max_new_tokens: newTokens, min_new_tokens: newTokens, do_sample: false, streamer: stamps as never });
    return stamps;
  };
  try {
    await run(2); // warm-up
    const s = await run(req.decodeTokens + 1);
    const steps = s.at.length - 2;
    return {
      runner: `transformers.js-${device}`, loadMs, prefillMs: s.at[1]! - s.at[0]!,
      decodeMs: (s.at.at(-1)! - s.at[1]!) / Math.max(1, steps), tokens: s.tokens,
    };
  } finally {
    await model.dispose();
  }
}

async function bench(req: ModelBenchRequest): Promise<{ adapter: string; rows: ModelBenchRow[] }> {
  const adapter = await navigator.gpu.requestAdapter();
  const info = adapter?.info;
  const rows: ModelBenchRow[] = [];
  for (const runner of req.runners) {
    try {
      rows.push(runner === 'ours-webgpu' ? await ours(req) : await transformers(req, runner === 'transformers.js-webgpu' ? 'webgpu' : 'wasm'));
    } catch (e) {
      rows.push({ runner, loadMs: NaN, prefillMs: NaN, decodeMs: NaN, tokens: [], error: String((e as Error)?.stack ?? e).slice(0, 500) });
    }
  }
  return { adapter: info ? `${info.vendor} ${info.architecture} ${info.description}`.trim() : 'none', rows };
}

(window as unknown as { bench: typeof bench }).bench = bench;
document.title = 'ready';
