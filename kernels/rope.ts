// Rotary position embedding for q or k: x f32 [T, heads, headDim], positions u32 [T].
import { AigridError } from '../protocol/index.ts';
import angle from './rope_angle.wgsl?raw';
import body from './rope.wgsl?raw';
import type { GpuContext } from './context.ts';
import { ropeInvFreq, type RopeScaling } from './cpu/rope.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import type { GpuTensor } from './tensor.ts';

const WG = 256;
const code = angle + body;

export class RopeOp {
  private readonly pipeline: GPUComputePipeline;
  private readonly inPlace: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.pipeline = ctx.pipeline({ op: 'rope', dtype: 'f32', workgroup: WG }, code, { WG }, 'main');
    this.inPlace = ctx.pipeline({ op: 'rope', dtype: 'f32', workgroup: WG, variant: 'in_place' }, code, { WG }, 'in_place');
  }

  /**
   * Rotates x by each token's position into out; out may be x (in place). theta is rope_theta.
   * Angles match HF's f32 angles bit for bit; cos/sin hold ~2e-7 for positions below 2e5.
   */
  run(encoder: GPUCommandEncoder, x: GpuTensor, positions: GpuTensor, out: GpuTensor, theta: number, scaling?: RopeScaling): void {
    expectDtype('rope', 'x', x, ['f32']);
    expectDtype('rope', 'positions', positions, ['u32']);
    expectDtype('rope', 'out', out, ['f32']);
    expectShape('rope', 'x', x, [null, null, null]);
    const [tokens, heads, headDim] = x.shape as [number, number, number];
    if (headDim % 2 !== 0) throw new AigridError('ERR_SHAPE_MISMATCH', `rope: headDim must be even, got ${headDim}`);
    expectShape('rope', 'positions', positions, [tokens]);
    expectShape('rope', 'out', out, x.shape);
    if (!Number.isFinite(theta) || theta <= 0) throw new AigridError('ERR_INVALID_ARGUMENT', `rope: theta must be finite and > 0, got ${theta}`);
    const n = (tokens * heads * headDim) / 2;
    if (n === 0) return;
    const inPlace = out.buffer === x.buffer;
    const params = this.ctx.uniform(new Uint32Array([n, heads, headDim / 2]));
    const buffers = [out.buffer, params, positions.buffer, this.freqs(theta, headDim, scaling).buffer];
    if (!inPlace) buffers.push(x.buffer);
    const grid = elementGrid(n, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, inPlace ? this.inPlace : this.pipeline, buffers, grid);
  }

  private freqs(theta: number, headDim: number, scaling?: RopeScaling): GpuTensor {
    return ropeFreqs(this.ctx, theta, headDim, scaling);
  }
}

const freqTables = new WeakMap<GpuContext, Map<string, GpuTensor>>();

/** inv_freq per (theta, headDim, scaling): computed on the CPU in f32 exactly as HF does, uploaded once per context. */
export function ropeFreqs(ctx: GpuContext, theta: number, headDim: number, scaling?: RopeScaling): GpuTensor {
  let tables = freqTables.get(ctx);
  if (!tables) freqTables.set(ctx, (tables = new Map()));
  const key = `${theta}/${headDim}/${JSON.stringify(scaling ?? null)}`;
  let t = tables.get(key);
  if (!t) {
    t = ctx.tensor([headDim / 2], 'f32', ropeInvFreq(theta, headDim, scaling), 'rope.inv_freq');
    tables.set(key, t);
  }
  return t;
}
