// The key/value cache of one session and one layer, kept on the GPU between decode steps.
import { AigridError } from '../protocol/index.ts';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectInteger, expectShape } from './guard.ts';
import code from './kv-append.wgsl?raw';
import type { GpuTensor } from './tensor.ts';

const WG = 256;

export interface KvCacheOptions {
  kvHeads: number;
  headDim: number;
  /** The model's context length: the most tokens the cache can hold. */
  maxSeq: number;
  label?: string;
}

/**
 * K and V are f32 [kvHeads, maxSeq, headDim]: element (h, pos, d) at (h * maxSeq + pos) * headDim + d,
 * so the keys one head attends over are contiguous. Rows 0 .. length - 1 hold the cached tokens.
 */
export class KvCache {
  readonly kvHeads: number;
  readonly headDim: number;
  readonly maxSeq: number;
  readonly k: GpuTensor;
  readonly v: GpuTensor;
  private cached = 0;
  private destroyed = false;
  private readonly pipeline: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext, options: KvCacheOptions) {
    const { kvHeads, headDim, maxSeq, label = 'kv-cache' } = options;
    expectInteger('kv-cache', 'kvHeads', kvHeads, 1);
    expectInteger('kv-cache', 'headDim', headDim, 1);
    expectInteger('kv-cache', 'maxSeq', maxSeq, 1);
    this.kvHeads = kvHeads;
    this.headDim = headDim;
    this.maxSeq = maxSeq;
    const shape = [kvHeads, maxSeq, headDim];
    // ctx.tensor refuses sizes beyond maxBufferSize / maxStorageBufferBindingSize with ERR_GPU_LIMIT.
    this.k = ctx.tensor(shape, 'f32', undefined, `${label}.k`);
    try {
      this.v = ctx.tensor(shape, 'f32', undefined, `${label}.v`);
    } catch (err) {
      this.k.buffer.destroy();
      throw err;
    }
    this.pipeline = ctx.pipeline({ op: 'kv-append', dtype: 'f32', workgroup: WG }, code, { WG });
  }

  /** Tokens cached so far (positions 0 .. length - 1). */
  get length(): number {
    return this.cached;
  }

  /** GPU memory held by K and V together. */
  get bytes(): number {
    return this.k.byteLength + this.v.byteLength;
  }

  /**
   * Records the copy of T new rows (k, v: f32 [T, kvHeads, headDim], already rotated) to positions
   * length .. length + T - 1 and advances length at once, so attention recorded next sees them.
   */
  append(encoder: GPUCommandEncoder, k: GpuTensor, v: GpuTensor): void {
    this.checkLive();
    expectDtype('kv-cache', 'k', k, ['f32']);
    expectDtype('kv-cache', 'v', v, ['f32']);
    expectShape('kv-cache', 'k', k, [null, this.kvHeads, this.headDim]);
    expectShape('kv-cache', 'v', v, k.shape);
    const tokens = k.shape[0]!;
    if (this.cached + tokens > this.maxSeq) {
      throw new AigridError(
        'ERR_INVALID_ARGUMENT',
        `kv-cache: appending ${tokens} tokens at length ${this.cached} exceeds maxSeq ${this.maxSeq} (the model's context length)`,
      );
    }
    if (tokens === 0) return;
    const n = tokens * this.kvHeads * this.headDim;
    const params = this.ctx.uniform(new Uint32Array([n, this.kvHeads, this.headDim, this.maxSeq, this.cached]));
    const grid = elementGrid(n, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, this.pipeline, [k.buffer, v.buffer, this.k.buffer, this.v.buffer, params], grid);
    this.cached += tokens;
  }

  /** Forgets every token from `length` on (a rewind or a new conversation); the rows are overwritten later. */
  truncate(length: number): void {
    this.checkLive();
    expectInteger('kv-cache', 'length', length, 0, this.cached);
    this.cached = length;
  }

  /** Fails with a named error once destroy() has freed the buffers. */
  checkLive(): void {
    if (this.destroyed) throw new AigridError('ERR_INVALID_ARGUMENT', 'kv-cache: used after destroy()');
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.k.buffer.destroy();
    this.v.buffer.destroy();
  }
}
