// npm run bench:model — greedy prefill and decode tokens/s of one peer of our runtime (Head + Shard
// [0, n) on WebGPU, weights over HTTP) against @huggingface/transformers on the same weights (their
// ONNX export) with device 'webgpu' and 'wasm' (one thread), all in one Chromium page on one adapter
// (SwiftShader here). First tiny-llama, then a random checkpoint with SmolLM2-135M's shapes.
// Prints a table per model, then one line: RESULT {json} (the SmolLM2-shaped figures; ratios are
// ours / theirs). AIGRID_BENCH_PROMPT (default 32) and AIGRID_BENCH_DECODE (default 4) set the
// SmolLM2-shaped token counts; AIGRID_BENCH_TINY_DECODE (default 16) the tiny model's decode steps.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'puppeteer-core';
import { createServer } from 'vite';
import { writeCheckpoint } from '../fixtures/checkpoint-files.ts';
import { configJson, generationConfigJson, refConfigFromJson } from '../fixtures/hf-config.ts';
import { fixtures, FIXTURE_DIR, ONNX_FILE } from '../fixtures/index.ts';
import { llamaOnnx } from '../fixtures/onnx-llama.ts';
import type { ModelSpec as FixtureSpec } from '../fixtures/specs.ts';
import { buildVocab } from '../fixtures/vocab.ts';
import { randomWeights } from '../fixtures/weights.ts';
import { launchChromium, openPage } from '../helpers/chromium.ts';
import { startRangeServer } from '../helpers/range-server.ts';
import type { ModelBenchRequest, ModelBenchRow, Runner } from './model-page.ts';

// The same checkpoint as bench:grid (same spec and seed), plus its ONNX export.
const SMOL = 'bench-smollm2-135m-shapes';
const DIR = join(FIXTURE_DIR, SMOL);
const SPEC: FixtureSpec = {
  name: SMOL, modelType: 'llama', layers: 30, hidden: 576, heads: 9, kvHeads: 3, intermediate: 1536,
  vocabSize: 49152, words: 200, vocab: 'chatml-first', maxPositions: 2048, tied: true, eps: 1e-5, ropeTheta: 100000,
  writeHeadDim: false, scales: { embed: 1, proj: 1, head: 24, bias: 0, norm: 0.1 }, seed: 135,
};
const PROMPT_TOKENS = Number(process.env.AIGRID_BENCH_PROMPT ?? 32);
const DECODE_TOKENS = Number(process.env.AIGRID_BENCH_DECODE ?? 4);
const TINY_DECODE_TOKENS = Number(process.env.AIGRID_BENCH_TINY_DECODE ?? 16);
const RUNNERS: Runner[] = ['ours-webgpu', 'transformers.js-webgpu', 'transformers.js-wasm'];

/** Writes the SmolLM2-shaped checkpoint (as bench:grid does) and its ONNX export where missing. */
async function smolCheckpoint(): Promise<void> {
  const vocab = buildVocab(SPEC);
  const config = configJson(SPEC, vocab, 'F16');
  const hasCheckpoint = existsSync(join(DIR, 'model.safetensors'));
  const hasOnnx = existsSync(join(DIR, ONNX_FILE));
  if (hasCheckpoint && hasOnnx && existsSync(join(DIR, 'generation_config.json'))) return;
  // The random values are representable in f16, so the F16 checkpoint and the f32 ONNX agree.
  const weights = randomWeights(SPEC, SPEC.seed);
  mkdirSync(join(DIR, 'onnx'), { recursive: true });
  if (!hasCheckpoint) {
    writeFileSync(join(DIR, 'config.json'), JSON.stringify(config, null, 2));
    await writeCheckpoint(DIR, weights, 'F16');
  }
  writeFileSync(join(DIR, 'generation_config.json'), JSON.stringify(generationConfigJson(vocab), null, 2));
  if (!hasOnnx) writeFileSync(join(DIR, ONNX_FILE), llamaOnnx(refConfigFromJson(config), weights));
}

const round = (x: number, d = 2) => (Number.isFinite(x) ? Number(x.toFixed(d)) : null);

interface Figures {
  prefillTokS: Record<string, number>;
  decodeTokS: Record<string, number>;
}

async function benchModel(page: Page, request: ModelBenchRequest): Promise<Figures> {
  const t0 = performance.now();
  const result = await page.evaluate(
    (req) => (window as unknown as { bench(r: ModelBenchRequest): Promise<{ adapter: string; rows: ModelBenchRow[] }> }).bench(req),
    request,
  );
  const figures: Figures = { prefillTokS: {}, decodeTokS: {} };
  const ourTokens = result.rows.find((r) => r.runner === 'ours-webgpu')?.tokens ?? [];
  const table = result.rows.map((row) => {
    const prefill = (request.prompt.length * 1000) / row.prefillMs;
    const decode = 1000 / row.decodeMs;
    figures.prefillTokS[row.runner] = prefill;
    figures.decodeTokS[row.runner] = decode;
    return {
      runner: row.runner,
      load_s: round(row.loadMs / 1000),
      prefill_ms: round(row.prefillMs, 1),
      prefill_tok_s: round(prefill),
      decode_ms_per_tok: round(row.decodeMs, 1),
      decode_tok_s: round(decode),
      same_tokens_as_ours: row.error ? 'error' : ourTokens.join(',') === row.tokens.join(','),
    };
  });
  console.log(
    `\n${request.name}: prompt ${request.prompt.length} tokens, ${request.decodeTokens} decode steps, greedy; ` +
      `adapter: ${result.adapter}; ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  console.table(table);
  for (const row of result.rows) if (row.error) console.log(`${row.runner} failed: ${row.error}`);
  console.log(`tokens: ${result.rows.map((r) => `${r.runner}=[${r.tokens.join(',')}]`).join(' ')}`);
  return figures;
}

async function main(): Promise<void> {
  console.log('checking fixtures and the SmolLM2-shaped checkpoint ...');
  await fixtures();
  await smolCheckpoint();
  const files = await startRangeServer(FIXTURE_DIR);
  const vite = await createServer({
    configFile: false,
    root: new URL('../..', import.meta.url).pathname,
    logLevel: 'error',
    appType: 'mpa',
    server: { host: '127.0.0.1', port: 0, hmr: false, watch: null },
    optimizeDeps: { noDiscovery: true, include: [] },
  });
  await vite.listen();
  const port = (vite.httpServer!.address() as { port: number }).port;
  const chromium = await launchChromium();
  try {
    const { page, errors } = await openPage(chromium.browser, `http://127.0.0.1:${port}/test/bench/model-page.html`);
    page.setDefaultTimeout(0);
    await page.waitForFunction(() => document.title === 'ready', { timeout: 120_000 });
    const modelsUrl = `${files.url}/`;
    const prompt = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => 3 + ((i * 7) % (vocab - 3)));
    await benchModel(page, { modelsUrl, name: 'tiny-llama', prompt: prompt(8, 64), decodeTokens: TINY_DECODE_TOKENS, runners: RUNNERS });
    const smol = await benchModel(page, { modelsUrl, name: SMOL, prompt: prompt(PROMPT_TOKENS, 200), decodeTokens: DECODE_TOKENS, runners: RUNNERS });
    if (errors.length) console.log(`page errors: ${errors.slice(0, 5).join(' | ').slice(0, 2000)}`);
    const ours = smol.decodeTokS['ours-webgpu']!;
    const result = {
      decodeTokS: round(ours, 3),
      prefillTokS: round(smol.prefillTokS['ours-webgpu']!, 3),
      decodeVsTransformersJsWebgpu: round(ours / smol.decodeTokS['transformers.js-webgpu']!),
      decodeVsTransformersJsWasm: round(ours / smol.decodeTokS['transformers.js-wasm']!),
    };
    console.log(`RESULT ${JSON.stringify(result)}`);
  } finally {
    await chromium.close();
    await vite.close();
    await files.close();
  }
}

await main();
