// Attention over one cache filled at once (prefill) and over another filled a token at a time
// (decode), on the same keys, values and queries: shared by the f32 and f16 cache cases.
import { AttentionOp } from '../../kernels/attention.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { KvCache, type KvDtype } from '../../kernels/kv-cache.ts';
import { submit } from './check.ts';

export interface StepsRun {
  prefill: Float32Array;
  decoded: Float32Array;
  whole: KvCache;
  stepwise: KvCache;
  /** Frees the caches and the op. */
  destroy(): void;
}

export async function prefillAndDecode(
  ctx: GpuContext,
  dims: { heads: number; kvHeads: number; headDim: number; n: number },
  k: Float32Array, v: Float32Array, q: Float32Array, dtype: KvDtype = 'f32',
): Promise<StepsRun> {
  const { heads, kvHeads, headDim, n } = dims;
  const rowLen = kvHeads * headDim;
  const qLen = heads * headDim;
  // A small tile so the steps cross from one key split to several.
  const op = new AttentionOp(ctx, { headDim, workgroupSize: 16 });
  const whole = new KvCache(ctx, { kvHeads, headDim, maxSeq: n, dtype });
  const stepwise = new KvCache(ctx, { kvHeads, headDim, maxSeq: n, dtype });
  const prefill = ctx.tensor([n, heads, headDim], 'f32');
  const decoded = ctx.tensor([n, heads, headDim], 'f32');
  const step = ctx.tensor([1, heads, headDim], 'f32');
  submit(ctx, (e) => {
    whole.append(e, ctx.tensor([n, kvHeads, headDim], 'f32', k), ctx.tensor([n, kvHeads, headDim], 'f32', v));
    op.run(e, ctx.tensor([n, heads, headDim], 'f32', q), whole, prefill);
    for (let t = 0; t < n; t++) {
      const row = (data: Float32Array, len: number) => data.subarray(t * len, (t + 1) * len);
      stepwise.append(e, ctx.tensor([1, kvHeads, headDim], 'f32', row(k, rowLen)), ctx.tensor([1, kvHeads, headDim], 'f32', row(v, rowLen)));
      op.run(e, ctx.tensor([1, heads, headDim], 'f32', row(q, qLen)), stepwise, step);
      e.copyBufferToBuffer(step.buffer, 0, decoded.buffer, t * qLen * 4, qLen * 4);
    }
  });
  return {
    prefill: (await ctx.read(prefill)) as Float32Array,
    decoded: (await ctx.read(decoded)) as Float32Array,
    whole,
    stepwise,
    destroy() {
      whole.destroy();
      stepwise.destroy();
      op.destroy();
    },
  };
}
