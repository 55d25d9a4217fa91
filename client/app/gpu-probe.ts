// What this browser offers for serving layers: the WebGPU adapter (or why there is none), its key
// limits, and a short matmul benchmark on the GPU and on the CPU.
import { GpuContext } from '../../kernels/context.ts';
import { MatmulOp } from '../../kernels/matmul.ts';
import { describeGpu, measureCpuGflops } from '../mesh/capabilities.ts';
import type { GpuInfo } from '../../protocol/index.ts';

export type GpuProbe = { gpu: GPU; info: GpuInfo } | { gpu: null; reason: string };

export const KEY_LIMITS = ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage'] as const;
const BYTE_LIMITS = new Set<string>(['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize']);

export function isByteLimit(name: string): boolean {
  return BYTE_LIMITS.has(name);
}

export async function probeGpu(): Promise<GpuProbe> {
  const gpu = navigator.gpu;
  if (!gpu) {
    return { gpu: null, reason: 'This browser does not offer WebGPU (navigator.gpu is missing: an older browser, WebGPU turned off, or a page not served over HTTPS or localhost).' };
  }
  const info = await describeGpu(gpu);
  if (!info) return { gpu: null, reason: 'WebGPU is here but gave no adapter (the GPU or its driver is blocked, or there is no GPU).' };
  return { gpu, info };
}

export interface Benchmark {
  /** GFLOP/s of an n x n x n f32 matmul on the GPU, when there is one. */
  gpuGflops?: number;
  cpuGflops: number;
  n: number;
}

/** The tiled matmul kernel the runtime uses for prefill, n x n x n in f32: best of a few runs. */
export async function benchmarkGpu(gpu: GPU, n = 256, rounds = 4): Promise<number> {
  const ctx = await GpuContext.create({ gpu });
  try {
    const data = new Float32Array(n * n).map((_, i) => ((i * 7) % 13) / 13 - 0.5);
    const x = ctx.tensor([n, n], 'f32', data, 'bench-x');
    const w = ctx.tensor([n, n], 'f32', data, 'bench-w');
    const out = ctx.tensor([n, n], 'f32', undefined, 'bench-out');
    const op = new MatmulOp(ctx);
    const runs = 4;
    const pass = async () => {
      const encoder = ctx.encoder('bench');
      for (let i = 0; i < runs; i++) op.run(encoder, x, w, out);
      ctx.submit(encoder);
      await ctx.device.queue.onSubmittedWorkDone();
    };
    await pass(); // compiles the pipeline
    let best = Infinity;
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      await pass();
      best = Math.min(best, performance.now() - t0);
    }
    return round((2 * n * n * n * runs) / (Math.max(best, 0.001) * 1e6));
  } finally {
    ctx.destroy();
  }
}

/** Small enough to take well under a second on a software adapter, big enough to keep a GPU busy. */
export async function benchmark(probe: GpuProbe): Promise<Benchmark> {
  const n = probe.gpu && !probe.info.isFallbackAdapter ? 512 : 128;
  const gpuGflops = probe.gpu ? await benchmarkGpu(probe.gpu, n) : undefined;
  return { gpuGflops, cpuGflops: measureCpuGflops(), n };
}

const round = (x: number) => Math.round(x * 100) / 100;
