// The browser side of bench:kernels: our linear kernels and onnxruntime-web's WebGPU MatMul on the
// same device, the same weights and the same shapes, timed back to back.
import * as ort from 'onnxruntime-web/webgpu';
import { GpuContext } from '../../kernels/context.ts';
import { LinearOp } from '../../kernels/linear.ts';
import type { DType } from '../../kernels/tensor.ts';
import { uploadWeight } from '../../kernels/weights.ts';

export interface BenchRequest {
  m: number;
  k: number;
  n: number;
  dtypes: DType[];
  iterations: number;
}

export interface BenchRow {
  dtype: string;
  ms: number;
  maxDiffVsOrt: number;
}

let ctxPromise: Promise<GpuContext> | null = null;

async function context(): Promise<GpuContext> {
  ctxPromise ??= GpuContext.create().then((ctx) => {
    ort.env.wasm.wasmPaths = '/node_modules/onnxruntime-web/dist/';
    ort.env.wasm.numThreads = 1;
    return ctx;
  });
  return ctxPromise;
}

async function fetchBytes(url: string): Promise<ArrayBuffer> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.arrayBuffer();
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/** Mean time per run on one device's queue, after a warm-up run (pipelines, first allocations). */
async function timeIt(device: GPUDevice, iterations: number, record: () => Promise<void> | void): Promise<number> {
  await record();
  await device.queue.onSubmittedWorkDone();
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) await record();
  await device.queue.onSubmittedWorkDone();
  return (performance.now() - t0) / iterations;
}

async function bench(req: BenchRequest): Promise<{ adapter: string; ortMs: number; rows: BenchRow[] }> {
  const ctx = await context();
  const { m, k, n } = req;
  const w = new Float32Array(await fetchBytes(`/bench/weight?n=${n}&k=${k}`));
  const xData = new Float32Array(m * k).map((_, i) => Math.sin(i * 0.37));
  const x = ctx.tensor([m, k], 'f32', xData, 'x');

  const session = await ort.InferenceSession.create(new Uint8Array(await fetchBytes(`/bench/model?n=${n}&k=${k}`)), {
    executionProviders: ['webgpu'],
    preferredOutputLocation: 'gpu-buffer',
  });
  // ORT runs on its own device (same adapter); its input lives there too, so no copy is timed.
  const ortDevice = (await ort.env.webgpu.device) as GPUDevice;
  const xBuffer = ortDevice.createBuffer({ size: xData.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  ortDevice.queue.writeBuffer(xBuffer, 0, xData);
  const xOrt = ort.Tensor.fromGpuBuffer(xBuffer, { dataType: 'float32', dims: [m, k] });
  let last: ort.Tensor | null = null;
  const ortMs = await timeIt(ortDevice, req.iterations, async () => {
    last?.dispose();
    last = (await session.run({ x: xOrt })).y!;
  });
  const ortOut = (await last!.getData(true)) as Float32Array;
  await session.release();
  xBuffer.destroy();

  const rows: BenchRow[] = [];
  const op = new LinearOp(ctx);
  for (const dtype of req.dtypes) {
    const weight = uploadWeight(ctx, w, [n, k], dtype, { label: `w.${dtype}` });
    const out = ctx.tensor([m, n], 'f32', undefined, 'y');
    const ms = await timeIt(ctx.device, req.iterations, () => {
      const encoder = ctx.encoder();
      op.run(encoder, x, weight, out);
      ctx.submit(encoder);
    });
    const ours = (await ctx.read(out)) as Float32Array;
    rows.push({ dtype, ms, maxDiffVsOrt: maxDiff(ours, ortOut) });
    for (const part of weight.parts) part.tensor.buffer.destroy();
    out.buffer.destroy();
  }
  x.buffer.destroy();
  return { adapter: `${ctx.adapter.vendor} ${ctx.adapter.architecture}`.trim(), ortMs, rows };
}

(window as unknown as { bench: typeof bench }).bench = bench;
document.title = 'ready';
