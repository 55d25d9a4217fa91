// Greedy sampling: the index of each row's largest value, f32 [..., C] -> u32 [...].
// Ties give the lowest index. NaN is skipped (never the answer); a row of only NaN gives 0.
import { AigridError } from '../protocol/index.ts';
import code from './argmax.wgsl?raw';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import { elementCount, type GpuTensor } from './tensor.ts';

const WG = 256;

export class ArgmaxOp {
  private readonly pipeline: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.pipeline = ctx.pipeline({ op: 'argmax', dtype: 'f32', workgroup: WG }, code, { WG });
  }

  /** out[r] = argmax over the last dimension of x's row r; out has x's shape without it. */
  run(encoder: GPUCommandEncoder, x: GpuTensor, out: GpuTensor): void {
    expectDtype('argmax', 'x', x, ['f32']);
    expectDtype('argmax', 'out', out, ['u32']);
    if (x.shape.length === 0) throw new AigridError('ERR_SHAPE_MISMATCH', 'argmax: x must have at least one dimension');
    const cols = x.shape[x.shape.length - 1]!;
    if (cols === 0) throw new AigridError('ERR_SHAPE_MISMATCH', 'argmax: rows must not be empty');
    expectShape('argmax', 'out', out, x.shape.slice(0, -1));
    const rows = elementCount(x.shape) / cols;
    if (rows === 0) return;
    const params = this.ctx.uniform(new Uint32Array([rows, cols]));
    const grid = elementGrid(rows, 1, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, this.pipeline, [x.buffer, out.buffer, params], grid);
  }
}
