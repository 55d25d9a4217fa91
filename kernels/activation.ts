// Activations of LLaMA-family (SiLU, SwiGLU), GPT-2 (GELU, tanh form) and Gemma (GeGLU) MLPs, f32,
// element-wise.
import { AigridError } from '../protocol/index.ts';
import body from './activation.wgsl?raw';
import fns from './activation_fns.wgsl?raw';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import { elementCount, type GpuTensor } from './tensor.ts';

const WG = 256;
const code = fns + body;

type Kind = 'silu' | 'gelu' | Gated;
/** A gated MLP's activation: silu(gate) * up, or gelu(gate) * up. */
export type Gated = 'swiglu' | 'geglu';

/** Records one element-wise dispatch; inputs are f32 of out's shape and never alias it. */
function record(ctx: GpuContext, pipeline: GPUComputePipeline, encoder: GPUCommandEncoder, op: Kind, out: GpuTensor, inputs: [string, GpuTensor][]): void {
  expectDtype(op, 'out', out, ['f32']);
  for (const [name, t] of inputs) {
    expectDtype(op, name, t, ['f32']);
    expectShape(op, name, t, out.shape);
    if (t.buffer === out.buffer) throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: out must not be ${name} (no in-place path)`);
  }
  const n = elementCount(out.shape);
  if (n === 0) return;
  const params = ctx.uniform(new Uint32Array([n]));
  const grid = elementGrid(n, WG, ctx.limits.maxComputeWorkgroupsPerDimension);
  ctx.dispatch(encoder, pipeline, [out.buffer, params, ...inputs.map(([, t]) => t.buffer)], grid);
}

function build(ctx: GpuContext, kind: Kind, variant = ''): GPUComputePipeline {
  return ctx.pipeline({ op: kind, dtype: 'f32', workgroup: WG, variant }, code, { WG }, `${kind}${variant ? `_${variant}` : ''}_main`);
}

/** out = x * sigmoid(x). */
export class SiluOp {
  private readonly pipeline: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.pipeline = build(ctx, 'silu');
  }

  run(encoder: GPUCommandEncoder, x: GpuTensor, out: GpuTensor): void {
    record(this.ctx, this.pipeline, encoder, 'silu', out, [['x', x]]);
  }
}

/** out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-2's gelu_new. */
export class GeluOp {
  private readonly pipeline: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.pipeline = build(ctx, 'gelu');
  }

  run(encoder: GPUCommandEncoder, x: GpuTensor, out: GpuTensor): void {
    record(this.ctx, this.pipeline, encoder, 'gelu', out, [['x', x]]);
  }
}

/** out = act(gate) * up (swiglu: silu, geglu: gelu), gate and up [T, I] from the MLP's two projections. */
export class GatedOp {
  private readonly pipeline: GPUComputePipeline;
  private split?: GPUComputePipeline;

  constructor(
    private readonly ctx: GpuContext,
    readonly kind: Gated = 'swiglu',
  ) {
    this.pipeline = build(ctx, kind);
  }

  run(encoder: GPUCommandEncoder, gate: GpuTensor, up: GpuTensor, out: GpuTensor): void {
    record(this.ctx, this.pipeline, encoder, this.kind, out, [['gate', gate], ['up', up]]);
  }

  /** out [T, I] = act(gu[:, :I]) * gu[:, I:], gu [T, 2I] the output of a fused [gate; up] projection. */
  runSplit(encoder: GPUCommandEncoder, gu: GpuTensor, out: GpuTensor): void {
    const op = `${this.kind} (split)`;
    expectDtype(op, 'gu', gu, ['f32']);
    expectDtype(op, 'out', out, ['f32']);
    expectShape(op, 'out', out, [null, null]);
    const [T, I] = out.shape as [number, number];
    expectShape(op, 'gu', gu, [T, 2 * I]);
    if (gu.buffer === out.buffer) throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: out must not be gu (no in-place path)`);
    const n = T * I;
    if (n === 0) return;
    this.split ??= build(this.ctx, this.kind, 'split');
    const grid = elementGrid(n, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, this.split, [out.buffer, this.ctx.uniform(new Uint32Array([n, I])), gu.buffer], grid);
  }
}
