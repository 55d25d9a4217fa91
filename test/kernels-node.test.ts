// Every kernel case on Node's WebGPU (Dawn; SwiftShader's Vulkan driver on a machine without GPU).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GpuContext } from '../kernels/context.ts';
import { nodeGpu } from '../kernels/node-gpu.ts';
import { KERNEL_CASES } from './kernels/cases.ts';

let ctx: GpuContext;

beforeAll(async () => {
  ctx = await GpuContext.create({ gpu: await nodeGpu() });
});

afterAll(() => ctx?.destroy());

describe('kernels in Node (webgpu package)', () => {
  for (const kernelCase of KERNEL_CASES) {
    it(kernelCase.name, async () => {
      const outcome = await kernelCase.run(ctx);
      expect(outcome.ok, outcome.detail).toBe(true);
    });
  }
});
