// npm run bench:kernels — our WebGPU linear kernels (matvec for decode, tiled matmul for prefill;
// f32, f16, int8 and q4 weights) against onnxruntime-web's WebGPU MatMul, in one Chromium page on
// one adapter. Prints a per-shape table, then one line: RESULT {json}.
// Shapes are LLaMA-like [K -> N]; AIGRID_BENCH_M sets the prefill rows (default 64). While tuning,
// AIGRID_BENCH_ONLY_MATVEC=1 skips prefill, AIGRID_BENCH_SHAPES=576x1536,2048x2048 (K x N) and
// AIGRID_BENCH_DTYPES=f32,q8 pick a subset.
// First, decode on weights in GGML block formats at [4096, 4096], in Node (Dawn: the machine's Vulkan
// GPU, else SwiftShader): one line GGML {json} of weight GB/s per format; AIGRID_BENCH_GGML=0 skips it.
import type { Page } from 'puppeteer-core';
import { createServer, type Plugin } from 'vite';
import { GpuContext } from '../../kernels/context.ts';
import { ggmlWeightBytes } from '../../kernels/ggml-linear.ts';
import { GGML_TYPE } from '../../kernels/ggml-quants.ts';
import { uploadGgmlWeight } from '../../kernels/ggml-weights.ts';
import { LinearOp } from '../../kernels/linear.ts';
import { nodeGpu } from '../../kernels/node-gpu.ts';
import type { DType, GgmlDType } from '../../kernels/tensor.ts';
import { quantizeGgml } from '../fixtures/ggml-quantize.ts';
import { launchChromium, openPage } from '../helpers/chromium.ts';
import { randomFloats } from '../kernels/check.ts';
import { matmulModel } from './onnx-matmul.ts';
import type { BenchRequest, BenchRow } from './kernels-page.ts';

const SHAPES: [number, number][] = process.env.AIGRID_BENCH_SHAPES
  ? process.env.AIGRID_BENCH_SHAPES.split(',').map((s) => s.split('x').map(Number) as [number, number])
  : [
      [576, 1536],
      [2048, 2048],
      [4096, 11008],
    ];
const DTYPES = (process.env.AIGRID_BENCH_DTYPES?.split(',') ?? ['f32', 'f16', 'q8', 'q4']) as DType[];
const ROWS = process.env.AIGRID_BENCH_ONLY_MATVEC === '1' ? [1] : [1, Number(process.env.AIGRID_BENCH_M ?? 64)];
const ITERATIONS = Number(process.env.AIGRID_BENCH_ITERATIONS ?? 3);

const weights = new Map<string, Float32Array>();
function weight(n: number, k: number): Float32Array {
  const key = `${n}x${k}`;
  let w = weights.get(key);
  if (!w) {
    w = randomFloats(n * 7 + k, n * k, -0.05, 0.05);
    weights.set(key, w);
  }
  return w;
}

/** Serves the seeded weights and the matching ONNX models to the page. */
function benchData(): Plugin {
  return {
    name: 'aigrid-bench-data',
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        const url = new URL(req.url ?? '/', 'http://x');
        if (url.pathname !== '/bench/weight' && url.pathname !== '/bench/model') return next();
        const n = Number(url.searchParams.get('n'));
        const k = Number(url.searchParams.get('k'));
        const w = weight(n, k);
        const body = url.pathname === '/bench/weight' ? new Uint8Array(w.buffer) : matmulModel(w, n, k);
        res.setHeader('content-type', 'application/octet-stream');
        res.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
      });
    },
  };
}

const geomean = (xs: number[]) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
const round = (x: number, d = 3) => Number(x.toFixed(d));
const WEIGHT_BYTES: Record<string, number> = { f32: 4, f16: 2, q8: 1 + 1 / 256, q4: 0.5 + 4 / 32 };

const GGML_FORMATS = [[GGML_TYPE.Q8_0, 'q8_0'], [GGML_TYPE.Q4_0, 'q4_0'], [GGML_TYPE.Q4_K, 'q4_k'], [GGML_TYPE.Q6_K, 'q6_k']] as const;

/** Decode (M = 1) through LinearOp on GGML blocks: GB/s of the file's weight bytes per step. */
async function ggmlMatvec(k = 4096, n = 4096): Promise<void> {
  const ctx = await GpuContext.create({ gpu: await nodeGpu() });
  try {
    const values = weight(n, k);
    const x = ctx.tensor([1, k], 'f32', new Float32Array(k).map((_, i) => Math.sin(i * 0.37)), 'x');
    const out = ctx.tensor([1, n], 'f32', undefined, 'y');
    const op = new LinearOp(ctx);
    const table: Record<string, unknown>[] = [];
    const gbps: Partial<Record<GgmlDType, number>> = {};
    for (const [type, dtype] of GGML_FORMATS) {
      const w = uploadGgmlWeight(ctx, { type, rows: n, cols: k, bytes: quantizeGgml(type, values) }, { label: dtype });
      const step = () => {
        const encoder = ctx.encoder();
        op.run(encoder, x, w, out);
        ctx.submit(encoder);
      };
      step(); // warm-up: pipeline and first allocations
      await ctx.device.queue.onSubmittedWorkDone();
      const t0 = performance.now();
      for (let i = 0; i < ITERATIONS; i++) step();
      await ctx.device.queue.onSubmittedWorkDone();
      const ms = (performance.now() - t0) / ITERATIONS;
      gbps[dtype] = round(ggmlWeightBytes(dtype, n, k) / (ms * 1e6), 2);
      table.push({ shape: `1x${k}->${n}`, dtype, ms: round(ms), GBps: gbps[dtype] });
      for (const part of w.parts) {
        part.tensor.buffer.destroy();
        part.tensor.scales?.destroy();
      }
    }
    const adapter = `${ctx.adapter.vendor} ${ctx.adapter.architecture}`.trim();
    console.log(`GGML decode in Node, adapter: ${adapter}; ${ITERATIONS} timed runs each after a warm-up`);
    console.table(table);
    console.log(`GGML ${JSON.stringify({ matvecGBps: gbps, adapter })}`);
  } finally {
    ctx.destroy();
  }
}

async function main(): Promise<void> {
  if (process.env.AIGRID_BENCH_GGML !== '0') await ggmlMatvec();
  const vite = await createServer({
    configFile: false,
    root: new URL('../..', import.meta.url).pathname,
    logLevel: 'error',
    plugins: [benchData()],
    server: { host: '127.0.0.1', port: 0, hmr: false, watch: null },
    optimizeDeps: { noDiscovery: true, include: [] },
  });
  await vite.listen();
  const port = (vite.httpServer!.address() as { port: number }).port;
  const chromium = await launchChromium();
  try {
    const { page, errors } = await openPage(chromium.browser, `http://127.0.0.1:${port}/test/bench/kernels-page.html`);
    await page.waitForFunction(() => document.title === 'ready', { timeout: 60_000 });
    const table: Record<string, unknown>[] = [];
    const matvecRatios: number[] = [];
    const matmulRatios: number[] = [];
    const gbps: number[] = [];
    const gflops: number[] = [];
    let adapter = '';
    for (const [k, n] of SHAPES) {
      for (const m of ROWS) {
        const request: BenchRequest = { m, k, n, dtypes: DTYPES, iterations: ITERATIONS };
        const result = await run(page, request);
        adapter = result.adapter;
        for (const row of result.rows) {
          const ratio = result.ortMs / row.ms;
          (m === 1 ? matvecRatios : matmulRatios).push(ratio);
          const flops = (2 * m * k * n) / (row.ms * 1e6);
          if (m === 1) gbps.push((n * k * WEIGHT_BYTES[row.dtype]!) / (row.ms * 1e6));
          else gflops.push(flops);
          table.push({
            shape: `${m}x${k}->${n}`,
            dtype: row.dtype,
            ours_ms: round(row.ms),
            ort_f32_ms: round(result.ortMs),
            vs_ort: round(ratio, 2),
            GFLOPs: round(flops, 2),
            max_diff: row.maxDiffVsOrt.toExponential(1),
          });
        }
      }
    }
    console.log(`adapter: ${adapter}; ${ITERATIONS} timed runs each after a warm-up; ratio = ORT time / our time`);
    console.table(table);
    if (errors.length) console.log(`page errors: ${errors.join(' | ')}`);
    const result = {
      matvecVsOrt: round(geomean(matvecRatios), 2),
      matmulVsOrt: round(geomean(matmulRatios), 2),
      matvecGBps: round(geomean(gbps), 2),
      matmulGflops: round(geomean(gflops), 2),
      adapter,
    };
    console.log(`RESULT ${JSON.stringify(result)}`);
  } finally {
    await chromium.close();
    await vite.close();
  }
}

async function run(page: Page, request: BenchRequest): Promise<{ adapter: string; ortMs: number; rows: BenchRow[] }> {
  return page.evaluate((req) => (window as unknown as { bench(r: BenchRequest): Promise<never> }).bench(req), request);
}

await main();
