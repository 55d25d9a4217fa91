// Every kernel case, run by test/kernels-node.test.ts (Dawn) and test/kernels-browser.test.ts
// (Chromium). A new op adds its case file here.
import { ADD_CASES } from './cases-add.ts';
import { CONTEXT_CASES } from './cases-context.ts';
import type { KernelCase } from './check.ts';

export const KERNEL_CASES: KernelCase[] = [...CONTEXT_CASES, ...ADD_CASES];
