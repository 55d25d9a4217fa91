import { AddOp } from '../../kernels/add.ts';
import { all, expectCode, type KernelCase } from './check.ts';

export const CASES: KernelCase[] = [
  {
    name: 'context: pipelines are built once per key',
    async run(ctx) {
      new AddOp(ctx);
      const before = ctx.pipelineCount;
      new AddOp(ctx);
      new AddOp(ctx);
      const ok = ctx.pipelineCount === before;
      return { ok, detail: `${before} -> ${ctx.pipelineCount} pipelines` };
    },
  },
  {
    name: 'context: a tensor beyond the binding limit is refused with the limit named',
    async run(ctx) {
      const rows = Math.ceil(ctx.limits.maxStorageBufferBindingSize / 4 / 1024) + 1;
      const outcome = await expectCode('ERR_GPU_LIMIT', () => ctx.tensor([rows, 1024], 'f32'));
      const named = /maxStorageBufferBindingSize|maxBufferSize/.test(outcome.detail);
      return all([outcome, { ok: named, detail: 'names the limit' }]);
    },
  },
  {
    name: 'context: data of the wrong size for a shape is refused',
    async run(ctx) {
      return expectCode('ERR_SHAPE_MISMATCH', () => ctx.tensor([3, 3], 'f32', new Float32Array(8)));
    },
  },
];
