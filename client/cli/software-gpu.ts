// Whether Node's only WebGPU adapter is a software one (SwiftShader): serving on the CPU backend
// is then faster than emulating a GPU on the same CPU.
import { nodeGpu } from '../../kernels/node-gpu.ts';

export async function softwareAdapter(): Promise<boolean> {
  try {
    const adapter = await (await nodeGpu()).requestAdapter();
    if (!adapter) return true;
    const info = adapter.info;
    return /swiftshader|llvmpipe|software/i.test(`${info.vendor} ${info.architecture} ${info.description} ${info.device}`);
  } catch {
    return true;
  }
}
