// Token embedding lookup: ids u32 [T] and a table [V, H] (f32 or packed f16) give f32 [T, H].
import { AigridError } from '../protocol/index.ts';
import code from './embedding.wgsl?raw';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import type { GpuTensor } from './tensor.ts';

const WG = 256;

/** Throws ERR_INVALID_ARGUMENT naming the first id outside [0, vocab); for ids held on the CPU. */
export function checkIds(ids: Uint32Array, vocab: number): void {
  for (let t = 0; t < ids.length; t++) {
    if (ids[t]! >= vocab) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `embedding: ids[${t}] = ${ids[t]} is outside the vocabulary of ${vocab}`);
    }
  }
}

export class EmbeddingOp {
  private readonly f32: GPUComputePipeline;
  private readonly f16: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.f32 = ctx.pipeline({ op: 'embedding', dtype: 'f32', workgroup: WG }, code, { WG, HALF: 0 });
    this.f16 = ctx.pipeline({ op: 'embedding', dtype: 'f16', workgroup: WG }, code, { WG, HALF: 1 });
  }

  /** out[t] = table[ids[t]]; an id >= V gives a zero row (see checkIds to reject it up front). */
  run(encoder: GPUCommandEncoder, ids: GpuTensor, table: GpuTensor, out: GpuTensor): void {
    expectDtype('embedding', 'ids', ids, ['u32']);
    expectDtype('embedding', 'table', table, ['f32', 'f16']);
    expectDtype('embedding', 'out', out, ['f32']);
    expectShape('embedding', 'ids', ids, [null]);
    expectShape('embedding', 'table', table, [null, null]);
    const [vocab, hidden] = table.shape as [number, number];
    const tokens = ids.shape[0]!;
    expectShape('embedding', 'out', out, [tokens, hidden]);
    const n = tokens * hidden;
    if (n === 0) return;
    const pipeline = table.dtype === 'f16' ? this.f16 : this.f32;
    const params = this.ctx.uniform(new Uint32Array([n, hidden, vocab]));
    const grid = elementGrid(n, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, pipeline, [ids.buffer, table.buffer, out.buffer, params], grid);
  }
}
