// Residual add (same shapes) and bias add (b broadcast over the rows of a).
import code from './add.wgsl?raw';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import { elementCount, type GpuTensor } from './tensor.ts';

const WG = 256;

export class AddOp {
  private readonly pipeline: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.pipeline = ctx.pipeline({ op: 'add', dtype: 'f32', workgroup: WG }, code, { WG });
  }

  /** out = a + b, where b has a's shape (residual) or a's last dimension (bias). */
  run(encoder: GPUCommandEncoder, a: GpuTensor, b: GpuTensor, out: GpuTensor): void {
    for (const [name, t] of [['a', a], ['b', b], ['out', out]] as const) expectDtype('add', name, t, ['f32']);
    expectShape('add', 'out', out, a.shape);
    const n = elementCount(a.shape);
    const bias = b.shape.length === 1 && a.shape.length > 1 && b.shape[0] === a.shape[a.shape.length - 1];
    if (!bias) expectShape('add', 'b', b, a.shape);
    const bLen = elementCount(b.shape);
    if (n === 0) return;
    const params = this.ctx.uniform(new Uint32Array([n, bLen]));
    this.ctx.dispatch(encoder, this.pipeline, [a.buffer, b.buffer, out.buffer, params], elementGrid(n, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension));
  }
}
