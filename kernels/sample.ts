// Sampling on the GPU: logits f32 [V] -> token u32 [1], with the rule of kernels/cpu/sample.ts.
import { AigridError } from '../protocol/index.ts';
import type { GpuContext } from './context.ts';
import { isGreedy, resolveSampleOptions, type SampleOptions } from './cpu/sample.ts';
import { expectDtype, expectShape } from './guard.ts';
import code from './sample.wgsl?raw';
import type { GpuTensor } from './tensor.ts';

export type { SampleOptions } from './cpu/sample.ts';

export interface SampleOpOptions {
  /** Threads of the one workgroup; a power of two (default: the largest the adapter allows, up to 1024). */
  workgroupSize?: number;
}

/** One workgroup does all the work, so it is as wide as the adapter allows. */
const MAX_DEFAULT_WG = 1024;

export class SampleOp {
  private readonly pipeline: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext, options: SampleOpOptions = {}) {
    const { limits } = ctx;
    const max = Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
    const wg = options.workgroupSize ?? 2 ** Math.floor(Math.log2(Math.min(max, MAX_DEFAULT_WG)));
    if (!Number.isInteger(wg) || wg < 1 || (wg & (wg - 1)) !== 0) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `sample: workgroupSize must be a power of two, got ${wg}`);
    }
    if (wg > max) {
      throw new AigridError('ERR_GPU_LIMIT', `sample: workgroupSize ${wg} exceeds maxComputeInvocationsPerWorkgroup / maxComputeWorkgroupSizeX (${max})`);
    }
    const sq = 2 ** Math.ceil(Math.log2(wg) / 2);
    // Shared memory: partial sums, argmax keys and indices, run sums, four atomics.
    const shared = (3 * wg + sq + 4) * 4;
    if (shared > limits.maxComputeWorkgroupStorageSize) {
      throw new AigridError('ERR_GPU_LIMIT', `sample: workgroupSize ${wg} needs ${shared} bytes of workgroup memory, over maxComputeWorkgroupStorageSize (${limits.maxComputeWorkgroupStorageSize})`);
    }
    this.pipeline = ctx.pipeline({ op: 'sample', dtype: 'f32', workgroup: wg }, code, { WG: wg, SQ: sq });
  }

  /** Records the draw of one token from logits (f32 [V]) into token (u32 [1]). */
  run(encoder: GPUCommandEncoder, logits: GpuTensor, token: GpuTensor, options: SampleOptions = {}): void {
    const o = resolveSampleOptions(options);
    expectDtype('sample', 'logits', logits, ['f32']);
    expectDtype('sample', 'token', token, ['u32']);
    expectShape('sample', 'logits', logits, [null]);
    expectShape('sample', 'token', token, [1]);
    const n = logits.shape[0]!;
    if (n === 0) throw new AigridError('ERR_INVALID_ARGUMENT', 'sample: no logits');
    const data = new ArrayBuffer(32);
    const u32 = new Uint32Array(data);
    const f32 = new Float32Array(data);
    u32.set([n, o.topK < n ? o.topK : 0, o.seed, o.step]);
    f32[4] = o.temperature;
    f32[5] = o.topP;
    u32[6] = isGreedy(o) ? 1 : 0;
    u32[7] = o.topP < 1 ? 1 : 0;
    this.ctx.dispatch(encoder, this.pipeline, [logits.buffer, token.buffer, this.ctx.uniform(u32)], [1]);
  }
}
