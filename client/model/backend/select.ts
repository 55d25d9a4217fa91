// Picks the backend: WebGPU where a hardware adapter is available (an injected GpuContext or GPU,
// else the page's navigator.gpu; Node passes nodeGpu()), else the CPU. 'auto' on a GPU whose only
// adapter is a software one (SwiftShader) takes the CPU, which every measurement found faster
// there; an injected GpuContext is the caller's choice and kept. Serving peers decide 'auto' by
// measuring both on the assigned model's shapes instead (measure.ts, grid/serving-backend.ts).
import { AigridError } from '../../../protocol/index.ts';
import { GpuContext } from '../../../kernels/context.ts';
import { isCpuAdapter } from '../../../kernels/matvec.ts';
import { CpuBackend } from './cpu.ts';
import type { Backend } from './types.ts';
import { WebGpuBackend } from './webgpu.ts';

export type BackendChoice = 'auto' | 'webgpu' | 'cpu';

export interface BackendOptions {
  /** A GPU (navigator.gpu, nodeGpu()) or a context already made on one. */
  gpu?: GPU | GpuContext;
  /** CPU threads of quantized linears (default: the cores available). */
  threads?: number;
}

export async function createBackend(choice: BackendChoice = 'auto', options: BackendOptions = {}): Promise<Backend> {
  if (choice !== 'auto' && choice !== 'webgpu' && choice !== 'cpu') {
    throw new AigridError('ERR_INVALID_ARGUMENT', `backend must be 'auto', 'webgpu' or 'cpu', got ${JSON.stringify(choice)}`);
  }
  if (choice === 'cpu') return CpuBackend.create({ threads: options.threads });
  if (options.gpu instanceof GpuContext) return new WebGpuBackend(options.gpu, false);
  const gpu = options.gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    if (choice === 'webgpu') throw new AigridError('ERR_NO_WEBGPU', 'no GPU given and navigator.gpu is not available (in Node pass gpu: await nodeGpu())');
    return CpuBackend.create({ threads: options.threads });
  }
  try {
    const ctx = await GpuContext.create({ gpu });
    if (choice === 'auto' && isCpuAdapter(ctx.adapter)) {
      ctx.destroy();
      return CpuBackend.create({ threads: options.threads });
    }
    return new WebGpuBackend(ctx, true);
  } catch (err) {
    if (choice === 'auto' && err instanceof AigridError && err.code === 'ERR_NO_WEBGPU') return CpuBackend.create({ threads: options.threads });
    throw err;
  }
}

/** A backend given as an instance is the caller's; one made from a choice belongs to its user. */
export async function resolveBackend(backend: Backend | BackendChoice | undefined, options: BackendOptions): Promise<{ backend: Backend; owned: boolean }> {
  if (typeof backend === 'object' && backend !== null) return { backend, owned: false };
  return { backend: await createBackend(backend ?? 'auto', options), owned: true };
}
