// Causal grouped-query attention of the newest T tokens over a session's KV cache.
import { AigridError } from '../protocol/index.ts';
import combineCode from './attention-combine.wgsl?raw';
import code from './attention.wgsl?raw';
import type { GpuContext } from './context.ts';
import { expectDtype, expectInteger, expectShape } from './guard.ts';
import type { KvCache, KvDtype } from './kv-cache.ts';
import type { GpuTensor } from './tensor.ts';

export interface AttentionOptions {
  headDim: number;
  /** Threads per workgroup and keys per tile; a power of two (default 64). */
  workgroupSize?: number;
}

export interface AttentionRunOptions {
  /** Multiplies q·k before the softmax; default 1 / sqrt(headDim). */
  scale?: number;
  /** Sliding window: a query at position p sees only keys p - window + 1 .. p; none when absent. */
  window?: number;
  /** Soft-capping of the scaled scores (Gemma 2): cap * tanh(score / cap); none when absent. */
  softcap?: number;
}

/** Decode splits the keys across workgroups once each split gets at least this many tiles. */
const MIN_TILES_PER_SPLIT = 2;
const MAX_SPLITS = 32;

export class AttentionOp {
  readonly headDim: number;
  private readonly wg: number;
  private readonly constants: Record<string, number>;
  /** One variant per cache dtype, built when a cache of that dtype first comes. */
  private readonly pipelines = new Map<KvDtype, GPUComputePipeline>();
  private readonly combine: GPUComputePipeline;
  /** Decode partials; reused by every run (passes run in order), grown when a run needs more. */
  private scratch: GPUBuffer | null = null;

  constructor(private readonly ctx: GpuContext, options: AttentionOptions) {
    const { headDim, workgroupSize = 64 } = options;
    expectInteger('attention', 'headDim', headDim, 1);
    const limits = ctx.limits;
    const maxWg = Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
    expectInteger('attention', 'workgroupSize', workgroupSize, 1);
    if ((workgroupSize & (workgroupSize - 1)) !== 0) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `attention: workgroupSize must be a power of two, got ${workgroupSize}`);
    }
    if (workgroupSize > maxWg) {
      throw new AigridError('ERR_GPU_LIMIT', `attention: workgroupSize ${workgroupSize} exceeds maxComputeInvocationsPerWorkgroup / maxComputeWorkgroupSizeX (${maxWg})`);
    }
    const dg = Math.min(headDim, workgroupSize);
    const kg = Math.floor(workgroupSize / dg);
    const acc = kg * headDim;
    // Shared memory: q row, tile probabilities, reduction scratch, V accumulators.
    const shared = (headDim + 2 * workgroupSize + acc) * 4;
    if (shared > limits.maxComputeWorkgroupStorageSize) {
      throw new AigridError('ERR_GPU_LIMIT', `attention: headDim ${headDim} needs ${shared} bytes of workgroup memory, over maxComputeWorkgroupStorageSize (${limits.maxComputeWorkgroupStorageSize})`);
    }
    this.headDim = headDim;
    this.wg = workgroupSize;
    this.constants = { WG: workgroupSize, HD: headDim, DG: dg, KG: kg, ACC: acc };
    this.pipeline('f32');
    const key = { op: 'attention-combine', dtype: 'f32', workgroup: workgroupSize, variant: `hd${headDim}` };
    this.combine = ctx.pipeline(key, combineCode, { WG: workgroupSize, HD: headDim });
  }

  private pipeline(dtype: KvDtype): GPUComputePipeline {
    let pipeline = this.pipelines.get(dtype);
    if (!pipeline) {
      const half = dtype === 'f16';
      const key = { op: 'attention', dtype, workgroup: this.wg, variant: `hd${this.headDim}` };
      const rw = half ? Math.ceil(this.headDim / 2) : this.headDim;
      pipeline = this.ctx.pipeline(key, code, { ...this.constants, F16: half ? 1 : 0, RW: rw });
      this.pipelines.set(dtype, pipeline);
    }
    return pipeline;
  }

  /**
   * out[t, h] = softmax over keys j <= startPos + t of (q[t, h] · K[h / group, j]) * scale, applied to
   * V[h / group, j], where startPos = cache.length - T: append the T tokens' k, v to the cache first.
   * q, out: f32 [T, heads, headDim] with heads a multiple of cache.kvHeads. An f16 cache is read as
   * the halves it holds, so the result is that of an f32 cache of the f16-rounded k, v.
   */
  run(encoder: GPUCommandEncoder, q: GpuTensor, cache: KvCache, out: GpuTensor, options: AttentionRunOptions = {}): void {
    cache.checkLive();
    expectDtype('attention', 'q', q, ['f32']);
    expectDtype('attention', 'out', out, ['f32']);
    expectShape('attention', 'q', q, [null, null, this.headDim]);
    expectShape('attention', 'out', out, q.shape);
    if (cache.headDim !== this.headDim) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `attention: cache headDim ${cache.headDim} differs from the op's ${this.headDim}`);
    }
    const [tokens, heads] = q.shape as [number, number, number];
    if (heads === 0 || heads % cache.kvHeads !== 0) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `attention: q has ${heads} heads, not a multiple of the cache's ${cache.kvHeads} kv heads`);
    }
    if (tokens > cache.length) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `attention: ${tokens} query tokens but the cache holds ${cache.length}; append their k, v first`);
    }
    const scale = options.scale ?? 1 / Math.sqrt(this.headDim);
    if (!Number.isFinite(scale)) throw new AigridError('ERR_INVALID_ARGUMENT', `attention: scale must be finite, got ${scale}`);
    const window = options.window ?? 0;
    const softcap = options.softcap ?? 0;
    if (!Number.isFinite(softcap) || softcap < 0) throw new AigridError('ERR_INVALID_ARGUMENT', `attention: softcap must be a positive number, got ${options.softcap}`);
    if (!Number.isInteger(window) || window < 0 || window > 0xffffffff) throw new AigridError('ERR_INVALID_ARGUMENT', `attention: window must be a positive integer, got ${options.window}`);
    if (tokens === 0) return;

    const startPos = cache.length - tokens;
    const tiles = Math.ceil(cache.length / this.wg);
    // Prefill has T * heads workgroups to fill the GPU; decode has only `heads`, so it splits the keys.
    const wanted = tokens === 1 ? Math.min(MAX_SPLITS, Math.max(1, Math.floor(tiles / MIN_TILES_PER_SPLIT))) : 1;
    const tilesPerSplit = Math.ceil(tiles / wanted);
    const splits = Math.ceil(tiles / tilesPerSplit);
    const chunk = tilesPerSplit * this.wg;
    const data = new ArrayBuffer(48);
    new Uint32Array(data, 0, 7).set([tokens, heads, heads / cache.kvHeads, cache.maxSeq, startPos, splits, chunk]);
    new Float32Array(data, 28, 1)[0] = scale;
    new Uint32Array(data, 32, 1)[0] = window;
    new Float32Array(data, 36, 1)[0] = softcap;
    // The cache's own uniform (its length moves every step): see GpuContext.ownedUniform.
    const params = this.ctx.ownedUniform(cache, 'attention', encoder, new Uint32Array(data));
    const kv = [q.buffer, cache.k.buffer, cache.v.buffer];
    const pipeline = this.pipeline(cache.dtype);
    if (splits === 1) {
      this.ctx.dispatch(encoder, pipeline, [...kv, out.buffer, params], [heads, tokens, 1]);
      return;
    }
    const partials = this.partials(tokens * heads * splits * (this.headDim + 2) * 4);
    this.ctx.dispatch(encoder, pipeline, [...kv, partials, params], [heads, tokens, splits]);
    const combineParams = this.ctx.uniform(new Uint32Array([heads, splits]));
    this.ctx.dispatch(encoder, this.combine, [partials, out.buffer, combineParams], [heads, tokens]);
  }

  private partials(bytes: number): GPUBuffer {
    if (!this.scratch || this.scratch.size < bytes) {
      this.ctx.checkBindingSize('attention partials', bytes);
      // The old buffer is dropped, not destroyed: commands recorded earlier may still use it.
      this.scratch = this.ctx.device.createBuffer({ label: 'attention.partials', size: bytes, usage: GPUBufferUsage.STORAGE });
    }
    return this.scratch;
  }

  destroy(): void {
    this.scratch?.destroy();
    this.scratch = null;
  }
}
