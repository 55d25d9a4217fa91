// LayerNorm over the last dimension (GPT-2): x f32 [..., H], gamma and beta f32 [H].
import code from './layernorm.wgsl?raw';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import { normParams } from './rmsnorm.ts';
import type { GpuTensor } from './tensor.ts';

const WG = 256;

export class LayerNormOp {
  private readonly pipeline: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.pipeline = ctx.pipeline({ op: 'layernorm', dtype: 'f32', workgroup: WG }, code, { WG });
  }

  /** out = (x - mean) / sqrt(var + eps) * gamma + beta, biased variance, per row. */
  run(encoder: GPUCommandEncoder, x: GpuTensor, gamma: GpuTensor, beta: GpuTensor, out: GpuTensor, eps: number): void {
    for (const [name, t] of [['x', x], ['gamma', gamma], ['beta', beta], ['out', out]] as const) expectDtype('layernorm', name, t, ['f32']);
    const { rows, cols, data } = normParams('layernorm', x, eps);
    expectShape('layernorm', 'gamma', gamma, [cols]);
    expectShape('layernorm', 'beta', beta, [cols]);
    expectShape('layernorm', 'out', out, x.shape);
    if (rows === 0) return;
    const grid = elementGrid(rows, 1, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, this.pipeline, [x.buffer, gamma.buffer, beta.buffer, out.buffer, this.ctx.uniform(data)], grid);
  }
}
