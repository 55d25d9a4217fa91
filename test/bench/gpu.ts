// npm run bench:gpu — one peer's decode and prefill on WebGPU in Node (Dawn: the machine's Vulkan GPU,
// else SwiftShader), for random weights with SmolLM2-135M's and Llama-3.2-1B's shapes, stored in f16
// (f32 where the adapter lacks shader-f16) and in q4, the KV cache in f16 where the adapter has it.
// A step is one pass (embedding, layers and head together). Per model and dtype: tokens/s, dispatches
// per decoder layer on a decode step, passes, submits and bind groups made per token, the JS time encoding per token
// (and apart, in queue.submit, where a software driver does work), the bytes a decode
// step reads (weights in their dtype, the embedding row, the KV cache) and the fraction of the
// adapter's memory bandwidth that reaches (null where the adapter's bandwidth is unknown, as for
// SwiftShader). Then @huggingface/transformers (onnxruntime-node's WebGPU provider) on the ONNX
// export of the same SmolLM2-shaped weights, in its own process. Last line:
//   RESULT {"dispatchesPerLayer", "encodeMsPerToken", "decodeBandwidthFraction", "decodeVsTransformersJs", "adapter"}
// On a software adapter the figures that mean something are the structural ones (dispatches,
// encode time), and the Llama-3.2-1B shape runs with fewer layers (said in the output).
// Environment: AIGRID_BENCH_PROMPT, AIGRID_BENCH_DECODE (token counts), AIGRID_BENCH_1B_LAYERS,
// AIGRID_BENCH_SMOL_LAYERS (layer counts), AIGRID_BENCH_MODELS=smollm2 or =llama (one shape only),
// AIGRID_BENCH_TRANSFORMERS=0 skips the comparison.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebGpuBackend } from '../../client/model/backend/webgpu.ts';
import type { WeightDtype } from '../../client/model/backend/types.ts';
import { Head } from '../../client/model/head.ts';
import { Shard } from '../../client/model/shard.ts';
import { countersBetween, GpuContext } from '../../kernels/context.ts';
import { isCpuAdapter } from '../../kernels/matvec.ts';
import { nodeGpu } from '../../kernels/node-gpu.ts';
import { configJson, generationConfigJson, refConfigFromJson } from '../fixtures/hf-config.ts';
import { FIXTURE_DIR, ONNX_FILE } from '../fixtures/index.ts';
import { llamaOnnx } from '../fixtures/onnx-llama.ts';
import { headDim, type ModelSpec } from '../fixtures/specs.ts';
import { buildVocab } from '../fixtures/vocab.ts';
import { randomWeights } from '../fixtures/weights.ts';
import { adapterBandwidth } from './gpu-bandwidth.ts';
import { memorySource } from './gpu-source.ts';

const SCALES = { embed: 1, proj: 1, head: 24, bias: 0, norm: 0.1 };
/** bench:model's SmolLM2-shaped model (same spec and seed): its ONNX export is shared. */
const SMOL: ModelSpec = {
  name: 'bench-smollm2-135m-shapes', modelType: 'llama', layers: 30, hidden: 576, heads: 9, kvHeads: 3, intermediate: 1536,
  vocabSize: 49152, words: 200, vocab: 'chatml-first', maxPositions: 2048, tied: true, eps: 1e-5, ropeTheta: 100000,
  writeHeadDim: false, scales: SCALES, seed: 135,
};
const LLAMA_1B: ModelSpec = {
  name: 'bench-llama-3.2-1b-shapes', modelType: 'llama', layers: 16, hidden: 2048, heads: 32, kvHeads: 8, intermediate: 8192,
  vocabSize: 128256, words: 200, vocab: 'chatml-first', maxPositions: 131072, tied: true, eps: 1e-5, ropeTheta: 500000,
  ropeScaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  headDim: 64, writeHeadDim: true, scales: SCALES, seed: 1235,
};
const env = (name: string) => (process.env[name] ? Number(process.env[name]) : undefined);
const round = (x: number | null, d = 3) => (x !== null && Number.isFinite(x) ? Number(x.toFixed(d)) : null);
const argmax = (v: Float32Array) => v.reduce((best, x, i) => (x > v[best]! ? i : best), 0);

/** Bytes one weight [N, K] occupies as stored (q4: f32 scale per 32 values; q8: per row). */
function weightBytes(dtype: WeightDtype, N: number, K: number): number {
  switch (dtype) {
    case 'f32':
      return 4 * N * K;
    case 'f16':
      return 2 * N * K;
    case 'q8':
      return N * K + 4 * N;
    case 'q4':
      return (N * K) / 2 + (N * K) / 8;
  }
}

/** Bytes a decode step reads at cache length `cached` (after its append): every weight once, one embedding row, the KV caches. */
function decodeBytes(spec: ModelSpec, layers: number, dtype: WeightDtype, kvBytes: number, cached: number): number {
  const { hidden: H, intermediate: I, heads, kvHeads, vocabSize: V } = spec;
  const D = headDim(spec);
  const perLayer = weightBytes(dtype, heads * D, H) + 2 * weightBytes(dtype, kvHeads * D, H) + weightBytes(dtype, H, heads * D) +
    2 * weightBytes(dtype, I, H) + weightBytes(dtype, H, I) + 2 * H * 4;
  const kv = 2 * kvHeads * cached * D * kvBytes;
  const table = dtype === 'f32' ? 4 : 2;
  return layers * (perLayer + kv) + weightBytes(dtype, V, H) + H * 4 + H * table;
}

interface Run {
  model: string;
  layers: number;
  dtype: WeightDtype;
  prefillTokS: number;
  decodeTokS: number;
  dispatchesPerLayer: number;
  passesPerToken: number;
  submitsPerToken: number;
  bindGroupsPerToken: number;
  encodeMsPerToken: number;
  submitMsPerToken: number;
  bytesPerToken: number;
  tokens: number[];
}

async function runModel(ctx: GpuContext, spec: ModelSpec, layers: number, dtype: WeightDtype, weights: ReturnType<typeof randomWeights>, prompt: number[], decode: number): Promise<Run> {
  const vocab = buildVocab(spec);
  const source = memorySource(configJson({ ...spec, layers }, vocab, 'F32'), generationConfigJson(vocab), weights);
  const backend = new WebGpuBackend(ctx);
  const head = await Head.load(source, { backend, weightDtype: dtype });
  const shard = await Shard.load(source, {
    start: 0, end: layers, backend, weightDtype: dtype, kvDtype: ctx.f16 ? 'f16' : 'f32', maxSessionTokens: Math.min(spec.maxPositions, 1024),
  });
  // A step is one pass: embedding, layers and head recorded together (what a peer holding a
  // model's ends runs), so the hidden states never leave the device between them.
  const step = async (ids: number[], start: number, session: string) => {
    const positions = Uint32Array.from(ids, (_, i) => start + i);
    const tokens = Uint32Array.from(ids);
    const output = head.logitsOps(ids.length);
    return argmax(output.finish(await shard.forward(null, positions, session, undefined, { input: head.embedOps(tokens, positions)!, output })));
  };
  // The embedding's and the head's own dispatches (counted apart once) are not the layers'.
  const e0 = ctx.counters();
  await head.logits(await head.embed(Uint32Array.of(1), Uint32Array.of(0)), 1);
  const endsDispatches = countersBetween(e0, ctx.counters()).dispatches;
  try {
    await step(prompt, 0, 'warm');
    await step([1], prompt.length, 'warm');
    shard.release('warm');
    const p0 = performance.now();
    const tokens = [await step(prompt, 0, 'run')];
    const p1 = performance.now();
    const c0 = ctx.counters();
    for (let i = 0; i < decode; i++) tokens.push(await step([tokens.at(-1)!], prompt.length + i, 'run'));
    const p2 = performance.now();
    const all = countersBetween(c0, ctx.counters());
    shard.release('run');
    let bytes = 0;
    for (let i = 0; i < decode; i++) bytes += decodeBytes(spec, layers, dtype, ctx.f16 ? 2 : 4, prompt.length + i + 1);
    return {
      model: spec.name, layers, dtype,
      prefillTokS: (prompt.length * 1000) / (p1 - p0),
      decodeTokS: (decode * 1000) / (p2 - p1),
      dispatchesPerLayer: (all.dispatches / decode - endsDispatches) / layers,
      passesPerToken: all.passes / decode,
      submitsPerToken: all.submits / decode,
      bindGroupsPerToken: all.bindGroups / decode,
      encodeMsPerToken: all.encodeMs / decode,
      submitMsPerToken: all.submitMs / decode,
      bytesPerToken: bytes / decode,
      tokens,
    };
  } finally {
    shard.destroy();
    head.destroy();
    backend.destroy();
  }
}

/** The SmolLM2-shaped ONNX export bench:model also uses (written where missing). */
function smolOnnx(weights: ReturnType<typeof randomWeights>): string {
  const dir = join(FIXTURE_DIR, SMOL.name);
  const vocab = buildVocab(SMOL);
  const config = configJson(SMOL, vocab, 'F16');
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  if (!existsSync(join(dir, 'config.json'))) writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  if (!existsSync(join(dir, 'generation_config.json'))) writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(generationConfigJson(vocab), null, 2));
  if (!existsSync(join(dir, ONNX_FILE))) writeFileSync(join(dir, ONNX_FILE), llamaOnnx(refConfigFromJson(config), weights));
  return FIXTURE_DIR;
}

interface TransformersRow {
  prefillMs: number;
  decodeMs: number;
  tokens: number[];
}

/** transformers.js on the same weights in a child process (a second Dawn beside ours is its own business). */
function transformersJs(dir: string, prompt: number[], decode: number): TransformersRow | string {
  const script = fileURLToPath(new URL('./gpu-transformers.ts', import.meta.url));
  const register = fileURLToPath(new URL('../../bin/register.js', import.meta.url));
  const child = spawnSync(process.execPath, ['--import', register, script, dir, SMOL.name, prompt.join(','), String(decode)], {
    encoding: 'utf8', timeout: 600_000, env: process.env, maxBuffer: 64 << 20,
  });
  const line = child.stdout?.split('\n').find((l) => l.startsWith('TJS '));
  if (!line) return `transformers.js did not run (exit ${child.status}${child.signal ? `, ${child.signal}` : ''}): ${(child.stderr ?? '').trim().split('\n').slice(-3).join(' | ').slice(0, 600)}`;
  return JSON.parse(line.slice(4)) as TransformersRow;
}

async function main(): Promise<void> {
  const ctx = await GpuContext.create({ gpu: await nodeGpu() });
  const bandwidth = adapterBandwidth(ctx.adapter);
  const software = isCpuAdapter(ctx.adapter);
  const floatDtype: WeightDtype = ctx.f16 ? 'f16' : 'f32';
  const promptTokens = env('AIGRID_BENCH_PROMPT') ?? (software ? 8 : 128);
  const decodeTokens = env('AIGRID_BENCH_DECODE') ?? (software ? 12 : 64);
  const smolLayers = env('AIGRID_BENCH_SMOL_LAYERS') ?? SMOL.layers;
  const bigLayers = env('AIGRID_BENCH_1B_LAYERS') ?? (software ? 1 : LLAMA_1B.layers);
  console.log(
    `adapter: ${bandwidth.adapter} (${software ? 'software' : 'hardware'}; shader-f16 ${ctx.f16 ? 'yes' : 'no'}; bandwidth ` +
      `${bandwidth.bytesPerSecond ? `${bandwidth.known}, ${bandwidth.bytesPerSecond / 1e12} TB/s` : 'unknown'})`,
  );
  if (bigLayers !== LLAMA_1B.layers) console.log(`note: the Llama-3.2-1B shape runs with ${bigLayers} of its ${LLAMA_1B.layers} layers (full vocabulary and widths)`);
  if (smolLayers !== SMOL.layers) console.log(`note: the SmolLM2-135M shape runs with ${smolLayers} of its ${SMOL.layers} layers`);
  const prompt = Array.from({ length: promptTokens }, (_, i) => 3 + ((i * 7) % 197));
  const runs: Run[] = [];
  let smolWeights: ReturnType<typeof randomWeights> | undefined;
  const only = process.env.AIGRID_BENCH_MODELS;
  const shapes = ([[SMOL, smolLayers], [LLAMA_1B, bigLayers]] as const).filter(([spec]) => !only || spec.name.includes(only));
  for (const [spec, layers] of shapes) {
    const t0 = performance.now();
    const weights = randomWeights({ ...spec, layers }, spec.seed);
    if (spec === SMOL && layers === SMOL.layers) smolWeights = weights;
    console.log(`${spec.name}: ${layers} layers of random weights made in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    for (const dtype of [floatDtype, 'q4'] as const) {
      const t1 = performance.now();
      runs.push(await runModel(ctx, spec, layers, dtype, weights, prompt, decodeTokens));
      console.log(`  ${dtype}: ${((performance.now() - t1) / 1000).toFixed(1)} s`);
    }
  }
  console.log(`\nprompt ${promptTokens} tokens, ${decodeTokens} decode steps, greedy`);
  console.table(runs.map((r) => ({
    model: r.model.replace(/^bench-|-shapes$/g, ''), layers: r.layers, dtype: r.dtype,
    prefill_tok_s: round(r.prefillTokS, 2), decode_tok_s: round(r.decodeTokS, 2),
    dispatches_per_layer: round(r.dispatchesPerLayer, 2), passes_per_token: round(r.passesPerToken, 2), submits_per_token: round(r.submitsPerToken, 2), bind_groups_per_token: round(r.bindGroupsPerToken, 2),
    encode_ms_per_token: round(r.encodeMsPerToken, 3), submit_ms_per_token: round(r.submitMsPerToken, 3), mb_read_per_token: round(r.bytesPerToken / 2 ** 20, 1),
    bandwidth_fraction: bandwidth.bytesPerSecond ? round((r.bytesPerToken * r.decodeTokS) / bandwidth.bytesPerSecond, 4) : null,
  })));

  const ours = runs.find((r) => r.model === SMOL.name && r.dtype === floatDtype);
  let versus: number | null = null;
  if (process.env.AIGRID_BENCH_TRANSFORMERS === '0') console.log('transformers.js: skipped (AIGRID_BENCH_TRANSFORMERS=0)');
  else if (!smolWeights || !ours) console.log('transformers.js: not compared (the SmolLM2 shape did not run with all the layers of its ONNX export)');
  else {
    const t0 = performance.now();
    const theirs = transformersJs(smolOnnx(smolWeights), prompt, decodeTokens);
    if (typeof theirs === 'string') console.log(`${theirs}; reported as null`);
    else {
      versus = ours.decodeTokS / (1000 / theirs.decodeMs);
      console.log(
        `transformers.js (onnxruntime-node WebGPU, fp32 ONNX of the same weights, the same Vulkan driver) on ${SMOL.name}: ` +
          `prefill ${round((promptTokens * 1000) / theirs.prefillMs, 2)} tok/s, decode ${round(1000 / theirs.decodeMs, 2)} tok/s; ` +
          `ours (${floatDtype}) ${round(ours.decodeTokS, 2)} tok/s: ${round(versus, 2)}x; same tokens: ${theirs.tokens.join(',') === ours.tokens.join(',')} ` +
          `(${((performance.now() - t0) / 1000).toFixed(0)} s)`,
      );
    }
  }
  console.log('the Llama-3.2-1B shape is not compared: its ONNX export (tied 128256 x 2048 table twice, f32) passes protobuf\'s 2 GB');
  const big = runs.find((r) => r.model === LLAMA_1B.name && r.dtype === 'q4');
  const result = {
    dispatchesPerLayer: round(Math.max(...runs.map((r) => r.dispatchesPerLayer)), 2),
    encodeMsPerToken: round(ours?.encodeMsPerToken ?? null, 3),
    decodeBandwidthFraction: bandwidth.bytesPerSecond && big ? round((big.bytesPerToken * big.decodeTokS) / bandwidth.bytesPerSecond, 4) : null,
    decodeVsTransformersJs: round(versus, 3),
    adapter: bandwidth.adapter,
  };
  ctx.destroy();
  console.log(`RESULT ${JSON.stringify(result)}`);
}

await main();
