// The browser side of the kernel tests: the same cases as in Node, on Chromium's WebGPU.
import { GpuContext } from '../../kernels/context.ts';
import { KERNEL_CASES } from './cases.ts';
import type { CaseOutcome } from './check.ts';

let ctx: Promise<GpuContext> | null = null;

async function runKernelCase(name: string): Promise<CaseOutcome & { adapter: string }> {
  ctx ??= GpuContext.create();
  const context = await ctx;
  const found = KERNEL_CASES.find((c) => c.name === name);
  if (!found) return { ok: false, detail: `no case named ${name}`, adapter: '' };
  try {
    return { ...(await found.run(context)), adapter: context.adapter.architecture };
  } catch (err) {
    return { ok: false, detail: `threw ${(err as Error).name}: ${(err as Error).message}`, adapter: context.adapter.architecture };
  }
}

(window as unknown as { runKernelCase: typeof runKernelCase }).runKernelCase = runKernelCase;
document.title = 'ready';
