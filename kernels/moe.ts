// Mixture-of-experts on the GPU: routing weights [T, E] from router logits (softmax over the
// experts, the top k kept, renormalized on request) and the weighted sum of the experts' outputs,
// one expert at a time (acc + w[:, e] * y). Every expert runs on every row; a row's weight for an
// expert it did not choose is 0, so the sum is the routed one.
import { AigridError } from '../protocol/index.ts';
import code from './moe.wgsl?raw';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import type { GpuTensor } from './tensor.ts';

const WG = 64;
export const MAX_EXPERTS = 256;

export class MoeOp {
  private readonly route: GPUComputePipeline;
  private readonly addWeighted: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext) {
    this.route = ctx.pipeline({ op: 'moe-route', dtype: 'f32', workgroup: WG }, code, { WG }, 'route_main');
    this.addWeighted = ctx.pipeline({ op: 'moe-add', dtype: 'f32', workgroup: WG }, code, { WG }, 'add_weighted_main');
  }

  /** out [T, E] = routing weights of logits [T, E]. */
  runRoute(encoder: GPUCommandEncoder, logits: GpuTensor, out: GpuTensor, k: number, normalize: boolean): void {
    expectDtype('moe route', 'logits', logits, ['f32']);
    expectShape('moe route', 'logits', logits, [null, null]);
    expectShape('moe route', 'out', out, logits.shape);
    const [rows, experts] = logits.shape as [number, number];
    if (experts > MAX_EXPERTS) throw new AigridError('ERR_GPU_LIMIT', `moe route: ${experts} experts, at most ${MAX_EXPERTS}`);
    if (!Number.isInteger(k) || k < 1 || k > experts) throw new AigridError('ERR_INVALID_ARGUMENT', `moe route: k must be in [1, ${experts}], got ${k}`);
    if (rows === 0) return;
    const params = this.ctx.uniform(new Uint32Array([rows, experts, k, normalize ? 1 : 0, 0, 0]));
    this.ctx.dispatch(encoder, this.route, [out.buffer, params, logits.buffer], elementGrid(rows, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension));
  }

  /** out [T, H] = acc + weights[:, e] * y. */
  runAddWeighted(encoder: GPUCommandEncoder, acc: GpuTensor, y: GpuTensor, weights: GpuTensor, e: number, out: GpuTensor): void {
    for (const [name, t] of [['acc', acc], ['y', y], ['weights', weights], ['out', out]] as const) expectDtype('moe add', name, t, ['f32']);
    expectShape('moe add', 'acc', acc, [null, null]);
    expectShape('moe add', 'y', y, acc.shape);
    expectShape('moe add', 'out', out, acc.shape);
    const [rows, width] = acc.shape as [number, number];
    expectShape('moe add', 'weights', weights, [rows, null]);
    const experts = weights.shape[1]!;
    if (!Number.isInteger(e) || e < 0 || e >= experts) throw new AigridError('ERR_INVALID_ARGUMENT', `moe add: expert ${e} is not in [0, ${experts})`);
    if (rows * width === 0) return;
    const params = this.ctx.uniform(new Uint32Array([rows, experts, 0, 0, e, width]));
    this.ctx.dispatch(encoder, this.addWeighted, [out.buffer, params, acc.buffer, y.buffer, weights.buffer], elementGrid(rows * width, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension));
  }
}
