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
    name: 'context: an owned uniform is rewritten in place only once every pass that bound it was submitted',
    async run(ctx) {
      // Each dispatch writes its uniform's y at index x: every pass must see the value it was recorded with.
      const code = `@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> p: vec4<u32>;
@compute @workgroup_size(1) fn main() { out[p.x] = p.y; }`;
      const pipeline = ctx.pipeline({ op: 'test-owned-uniform', dtype: 'u32' }, code);
      const out = ctx.tensor([4], 'u32', undefined, 'owned-uniform out');
      const owner = {};
      const record = (encoder: GPUCommandEncoder, x: number) => {
        const buffer = ctx.ownedUniform(owner, 'slot', encoder, Uint32Array.of(x, 10 + x, 0, 0));
        ctx.dispatch(encoder, pipeline, [out.buffer, buffer], [1]);
        return buffer;
      };
      const first = ctx.encoder();
      const own = record(first, 0);
      const again = record(first, 1); // a second content in one pass: a buffer of its own
      const other = ctx.encoder();
      const early = record(other, 2); // the first pass is not submitted yet: a buffer of its own
      ctx.submit(other);
      ctx.submit(first);
      const later = ctx.encoder();
      const reused = record(later, 3); // every pass that bound it went: rewritten in place
      ctx.submit(later);
      const values = Array.from(new Uint32Array((await ctx.read(out)).buffer));
      out.buffer.destroy();
      ctx.dropOwned(owner);
      return all([
        { ok: values.join() === '10,11,12,13', detail: `values ${values.join()}` },
        { ok: again !== own && early !== own && reused === own, detail: 'one buffer, others only while a pass that bound it was pending' },
      ]);
    },
  },
  {
    name: 'context: data of the wrong size for a shape is refused',
    async run(ctx) {
      return expectCode('ERR_SHAPE_MISMATCH', () => ctx.tensor([3, 3], 'f32', new Float32Array(8)));
    },
  },
];
