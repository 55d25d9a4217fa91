// f32 [n] <-> f16 [n] (packed two per u32), e.g. hidden states on the wire.
import code from './cast.wgsl?raw';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import { elementCount, type GpuTensor } from './tensor.ts';

const WG = 256;

export class CastOp {
  private readonly toF16: GPUComputePipeline;
  private readonly toF32: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.toF16 = ctx.pipeline({ op: 'cast', dtype: 'f32', workgroup: WG, variant: 'to_f16' }, code, { WG }, 'to_f16');
    this.toF32 = ctx.pipeline({ op: 'cast', dtype: 'f16', workgroup: WG, variant: 'to_f32' }, code, { WG }, 'to_f32');
  }

  /**
   * Converts x into out, which has x's shape and the other float dtype. f32 -> f16 rounds to
   * nearest (overflow gives infinity, NaN stays NaN); f16 -> f32 is exact.
   */
  run(encoder: GPUCommandEncoder, x: GpuTensor, out: GpuTensor): void {
    expectDtype('cast', 'x', x, ['f32', 'f16']);
    expectDtype('cast', 'out', out, [x.dtype === 'f32' ? 'f16' : 'f32']);
    expectShape('cast', 'out', out, x.shape);
    const n = elementCount(x.shape);
    if (n === 0) return;
    const toHalf = x.dtype === 'f32';
    const threads = toHalf ? Math.ceil(n / 2) : n;
    const params = this.ctx.uniform(new Uint32Array([n]));
    const grid = elementGrid(threads, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, toHalf ? this.toF16 : this.toF32, [x.buffer, out.buffer, params], grid);
  }
}
