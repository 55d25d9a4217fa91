// The backend an assignment serves on. A backend given as an instance, or a forced 'webgpu' or
// 'cpu', is used as it is. 'auto' is decided by measuring both on the model's decode shapes
// (model/backend/measure.ts): those are known only once the assignment's checkpoint is open,
// which is after the peer joined and before its layers are read, so the measuring happens there
// and the shard loads onto the backend that won.
import type { Capabilities } from '../../protocol/index.ts';
import type { GgmlDType } from '../../kernels/tensor.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { measureCpuGflops } from '../mesh/capabilities.ts';
import { chooseBackend, type BackendDecision, type DecodeShape } from '../model/backend/measure.ts';
import type { BackendChoice } from '../model/backend/select.ts';
import type { Backend, WeightDtype } from '../model/backend/types.ts';
import { layerArch } from '../model/layers/index.ts';
import type { TensorSource } from '../model/load-weights.ts';
import { readConfig } from '../model/shard.ts';
import { weightsPerLayer } from './model-spec.ts';

export interface BackendSettings {
  backend?: Backend | BackendChoice;
  gpu?: GPU | GpuContext;
  /** CPU threads of a CPU backend made here. */
  threads?: number;
}

export interface ServingBackend {
  /** What the shard is given. */
  backend: Backend | BackendChoice;
  /** A backend made here: its assignment destroys it after the shard (and head) on it. */
  owned: Backend | null;
  /** How 'auto' chose. */
  decision?: BackendDecision;
}

/** The backend for layers [start, end) of the model `source` holds. */
export async function servingBackend(source: TensorSource, start: number, end: number, weightDtype: WeightDtype, settings: BackendSettings): Promise<ServingBackend> {
  const choice = settings.backend ?? 'auto';
  if (choice !== 'auto') return { backend: choice, owned: null };
  const shape = await decodeShape(source, start, weightDtype);
  const layerValues = (end - start) * weightsPerLayer(readConfig(source));
  const { backend, decision } = await chooseBackend(shape, layerValues, { gpu: settings.gpu, threads: settings.threads });
  return { backend, owned: backend, decision };
}

/**
 * Layer `layer`'s widths, and the dtype its largest weight is served in: a GGUF file's block
 * format where the file keeps it quantized, else `weightDtype`.
 */
export async function decodeShape(source: TensorSource, layer: number, weightDtype: WeightDtype): Promise<DecodeShape> {
  const config = readConfig(source);
  const intermediate = config.moe?.sparse[layer] ? config.moe.intermediate : config.intermediateSize;
  let dtype: DecodeShape['dtype'] = weightDtype;
  if (source.isQuantized) {
    const names = [...layerArch(config).shapes(config, layer).keys()];
    const largest = (await source.tensorInfo(names)).filter((t) => t.shape.length === 2).sort((a, b) => b.byteLength - a.byteLength)[0];
    // An unknown format is refused by name when measured (as loading would refuse it).
    if (largest && source.isQuantized(largest.name)) dtype = largest.dtype.toLowerCase() as GgmlDType;
  }
  return { hidden: config.hiddenSize, intermediate, dtype };
}

/**
 * What a peer announces once 'auto' chose, or null when that is what it announces already. The
 * figure stays comparable with other peers': on the CPU the same short matmul every CPU peer
 * measures; on WebGPU the CPU figure times how much faster WebGPU ran the model's shapes.
 */
export function announcedThroughput(current: Capabilities['throughput'], d: BackendDecision): Capabilities['throughput'] | null {
  if (current.backend === d.choice) return null;
  if (d.choice === 'cpu') return { backend: 'cpu', gflops: measureCpuGflops() };
  const speedup = d.cpuMs !== null && d.webgpuMs ? d.cpuMs / d.webgpuMs : 1;
  return { backend: 'webgpu', gflops: Number(Math.min(current.gflops * speedup, 1e7).toFixed(3)) };
}
