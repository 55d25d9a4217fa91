// WebGPU for Node through the `webgpu` package (Dawn). Dawn picks a Vulkan driver; where the
// system has none that works (a machine without a GPU), Chromium's SwiftShader driver is used.
import { existsSync } from 'node:fs';
import { AigridError } from '../protocol/index.ts';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/** Dawn hides shader-f16 on NVIDIA's Vulkan driver unless this adapter toggle is on. */
const DAWN_FLAGS = ['enable-dawn-features=vulkan_enable_f16_on_nvidia'];

// Every instance made here stays referenced for the life of the process: when Dawn's GPU object is
// garbage-collected its instance is freed, and devices made from it then crash the process.
const instances: GPU[] = [];

let shared: Promise<GPU> | undefined;

/** Node's GPU: made once per process (each Dawn instance probes the drivers again), then shared. */
export function nodeGpu(): Promise<GPU> {
  shared ??= createNodeGpu();
  shared.catch(() => (shared = undefined)); // a later call tries again
  return shared;
}

async function createNodeGpu(): Promise<GPU> {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const first = create(DAWN_FLAGS);
  instances.push(first);
  if (await first.requestAdapter()) return first;
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    const fallback = create(DAWN_FLAGS);
    instances.push(fallback);
    if (await fallback.requestAdapter()) return fallback;
  }
  throw new AigridError(
    'ERR_NO_WEBGPU',
    'no WebGPU adapter in Node: install libvulkan1 and a Vulkan driver, or Chromium for its SwiftShader driver',
  );
}
