// RMSNorm over the last dimension (LLaMA family): x f32 [..., H], weight f32 [H].
import { AigridError } from '../protocol/index.ts';
import code from './rmsnorm.wgsl?raw';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import { elementCount, type GpuTensor } from './tensor.ts';

const WG = 256;

/** Rows, columns and eps in the { u32, u32, f32 } layout the norm kernels read. */
export function normParams(op: string, x: GpuTensor, eps: number): { rows: number; cols: number; data: Uint8Array } {
  if (!Number.isFinite(eps) || eps < 0) throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: eps must be finite and >= 0, got ${eps}`);
  if (x.shape.length < 1) throw new AigridError('ERR_SHAPE_MISMATCH', `${op}: x must have at least one dimension`);
  const cols = x.shape[x.shape.length - 1]!;
  const rows = cols === 0 ? 0 : elementCount(x.shape) / cols;
  const data = new ArrayBuffer(12);
  new Uint32Array(data, 0, 2).set([rows, cols]);
  new Float32Array(data, 8, 1)[0] = eps;
  return { rows, cols, data: new Uint8Array(data) };
}

export class RmsNormOp {
  private readonly pipeline: GPUComputePipeline;
  private addPipeline?: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.pipeline = ctx.pipeline({ op: 'rmsnorm', dtype: 'f32', workgroup: WG }, code, { WG });
  }

  /** out = x / sqrt(mean(x^2) + eps) * weight, over each row's last dimension. */
  run(encoder: GPUCommandEncoder, x: GpuTensor, weight: GpuTensor, out: GpuTensor, eps: number): void {
    for (const [name, t] of [['x', x], ['weight', weight], ['out', out]] as const) expectDtype('rmsnorm', name, t, ['f32']);
    const { rows, cols, data } = normParams('rmsnorm', x, eps);
    expectShape('rmsnorm', 'weight', weight, [cols]);
    expectShape('rmsnorm', 'out', out, x.shape);
    if (rows === 0) return;
    const grid = elementGrid(rows, 1, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, this.pipeline, [x.buffer, weight.buffer, out.buffer, this.ctx.uniform(data)], grid);
  }

  /** out = residual + x / sqrt(mean(x^2) + eps) * weight: a norm and the residual add after it in one pass. */
  runAdd(encoder: GPUCommandEncoder, x: GpuTensor, weight: GpuTensor, residual: GpuTensor, out: GpuTensor, eps: number): void {
    for (const [name, t] of [['x', x], ['weight', weight], ['residual', residual], ['out', out]] as const) expectDtype('rmsnorm + add', name, t, ['f32']);
    const { rows, cols, data } = normParams('rmsnorm + add', x, eps);
    expectShape('rmsnorm + add', 'weight', weight, [cols]);
    expectShape('rmsnorm + add', 'residual', residual, x.shape);
    expectShape('rmsnorm + add', 'out', out, x.shape);
    if (out.buffer === x.buffer || out.buffer === residual.buffer) throw new AigridError('ERR_INVALID_ARGUMENT', 'rmsnorm + add: out must not share a buffer with x or residual');
    if (rows === 0) return;
    this.addPipeline ??= this.ctx.pipeline({ op: 'rmsnorm', dtype: 'f32', workgroup: WG, variant: 'add' }, code, { WG }, 'add_main');
    const grid = elementGrid(rows, 1, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, this.addPipeline, [x.buffer, weight.buffer, out.buffer, this.ctx.uniform(data), residual.buffer], grid);
  }
}
