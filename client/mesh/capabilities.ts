// What a peer tells the network about itself: its GPU (adapter info and limits, when WebGPU is
// present), its memory budget, and a throughput figure it measured rather than declared.
import type { Capabilities, GpuInfo, PipelineTask } from '../../protocol/index.ts';

/** Adapter limits worth advertising for placement decisions. */
const ADVERTISED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxStorageBuffersPerShaderStage',
] as const;

export async function describeGpu(gpu: GPU | undefined): Promise<GpuInfo | null> {
  if (!gpu) return null;
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter();
  } catch {
    return null;
  }
  if (!adapter) return null;
  const info = adapter.info;
  const limits: Record<string, number> = {};
  for (const name of ADVERTISED_LIMITS) limits[name] = Number(adapter.limits[name]);
  return {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    device: info?.device ?? '',
    description: info?.description ?? '',
    isFallbackAdapter: (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter,
    features: [...adapter.features].map(String).slice(0, 64),
    limits,
  };
}

/**
 * A short CPU matmul (n x n, f32) timed on this machine: a floor on what the peer can do until the
 * WebGPU kernels measure the GPU. Takes ~10-100 ms.
 */
export function measureCpuGflops(n = 96, rounds = 5): number {
  const a = new Float32Array(n * n).map((_, i) => ((i * 7) % 13) / 13);
  const b = new Float32Array(n * n).map((_, i) => ((i * 5) % 11) / 11);
  const c = new Float32Array(n * n);
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < n; k++) {
        const aik = a[i * n + k]!;
        for (let j = 0; j < n; j++) c[i * n + j]! += aik * b[k * n + j]!;
      }
    }
    best = Math.min(best, performance.now() - t0);
  }
  return Number(((2 * n * n * n) / (Math.max(best, 0.001) * 1e6)).toFixed(3));
}

export interface CapabilityOptions {
  kind: Capabilities['kind'];
  memoryBudgetMB: number;
  gpu?: GPU;
  agent?: string;
  /** Whole-model pipeline tasks this peer runs (protocol/pipelines.ts). */
  tasks?: readonly PipelineTask[];
}

export async function detectCapabilities(options: CapabilityOptions): Promise<Capabilities> {
  return {
    kind: options.kind,
    gpu: await describeGpu(options.gpu),
    memoryBudgetMB: options.memoryBudgetMB,
    throughput: { gflops: measureCpuGflops(), backend: 'cpu' },
    agent: options.agent?.slice(0, 256),
    ...(options.tasks?.length ? { tasks: [...options.tasks] } : {}),
  };
}
