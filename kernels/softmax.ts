// Softmax over the last dimension of f32 [..., C], stable (the row max is subtracted first).
// A row holding NaN gives NaN; a row of only -Infinity gives NaN (0 / 0), as in PyTorch.
import { AigridError } from '../protocol/index.ts';
import code from './softmax.wgsl?raw';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import { elementCount, type GpuTensor } from './tensor.ts';

const WG = 256;

export class SoftmaxOp {
  private readonly pipeline: GPUComputePipeline;
  private readonly inPlace: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.pipeline = ctx.pipeline({ op: 'softmax', dtype: 'f32', workgroup: WG }, code, { WG }, 'main');
    this.inPlace = ctx.pipeline({ op: 'softmax', dtype: 'f32', workgroup: WG, variant: 'in_place' }, code, { WG }, 'in_place');
  }

  /** out = softmax(x) per row; out may be x (in place). */
  run(encoder: GPUCommandEncoder, x: GpuTensor, out: GpuTensor): void {
    expectDtype('softmax', 'x', x, ['f32']);
    expectDtype('softmax', 'out', out, ['f32']);
    if (x.shape.length === 0) throw new AigridError('ERR_SHAPE_MISMATCH', 'softmax: x must have at least one dimension');
    expectShape('softmax', 'out', out, x.shape);
    const cols = x.shape[x.shape.length - 1]!;
    const rows = cols === 0 ? 0 : elementCount(x.shape) / cols;
    if (rows === 0) return;
    const inPlace = out.buffer === x.buffer;
    const params = this.ctx.uniform(new Uint32Array([rows, cols]));
    const buffers = inPlace ? [out.buffer, params] : [out.buffer, params, x.buffer];
    const grid = elementGrid(rows, 1, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, inPlace ? this.inPlace : this.pipeline, buffers, grid);
  }
}
