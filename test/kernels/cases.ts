// Every kernel case, run by test/kernels-node.test.ts (Dawn) and test/kernels-browser.test.ts
// (Chromium). Each cases-<op>.ts exports `CASES`; new files are picked up by the glob.
import type { KernelCase } from './check.ts';

const modules = import.meta.glob<{ CASES: KernelCase[] }>('./cases-*.ts', { eager: true });

export const KERNEL_CASES: KernelCase[] = Object.keys(modules)
  .sort()
  .flatMap((path) => modules[path]!.CASES);
