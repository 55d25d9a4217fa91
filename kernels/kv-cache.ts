// The key/value cache of one session and one layer, kept on the GPU between decode steps.
import { AigridError } from '../protocol/index.ts';
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectInteger, expectShape } from './guard.ts';
import f16Round from './f16_round.wgsl?raw';
import body from './kv-append.wgsl?raw';
import type { GpuTensor } from './tensor.ts';

const WG = 256;
const code = f16Round + body;

/** How cached keys and values are stored: f32, or f16 (half the memory, values rounded on append). */
export type KvDtype = 'f32' | 'f16';

export interface KvCacheOptions {
  kvHeads: number;
  headDim: number;
  /** The model's context length: the most tokens the cache can hold. */
  maxSeq: number;
  /** Default f32. */
  dtype?: KvDtype;
  label?: string;
}

/** Words one cached row of one head takes: headDim f32s, or headDim halves padded to a whole word. */
function rowWords(headDim: number, dtype: KvDtype): number {
  return dtype === 'f16' ? Math.ceil(headDim / 2) : headDim;
}

/** GPU memory a cache of these dimensions holds (K and V), for budgeting before allocating. */
export function kvCacheBytes(options: KvCacheOptions): number {
  return 2 * options.kvHeads * options.maxSeq * rowWords(options.headDim, options.dtype ?? 'f32') * 4;
}

/**
 * K and V are [kvHeads, maxSeq, headDim]: element (h, pos, d) at (h * maxSeq + pos) * headDim + d,
 * so the keys one head attends over are contiguous. Rows 0 .. length - 1 hold the cached tokens.
 * f16 packs two halves per u32 (tensor.ts's layout), each row padded to a whole word: an odd
 * headDim stores headDim + 1 halves per row, the last one 0.
 */
export class KvCache {
  readonly kvHeads: number;
  readonly headDim: number;
  readonly maxSeq: number;
  readonly dtype: KvDtype;
  readonly k: GpuTensor;
  readonly v: GpuTensor;
  private cached = 0;
  private destroyed = false;
  private readonly pipeline: GPUComputePipeline;

  constructor(private readonly ctx: GpuContext, options: KvCacheOptions) {
    const { kvHeads, headDim, maxSeq, dtype = 'f32', label = 'kv-cache' } = options;
    expectInteger('kv-cache', 'kvHeads', kvHeads, 1);
    expectInteger('kv-cache', 'headDim', headDim, 1);
    expectInteger('kv-cache', 'maxSeq', maxSeq, 1);
    if (dtype !== 'f32' && dtype !== 'f16') {
      throw new AigridError('ERR_DTYPE_UNSUPPORTED', `kv-cache: dtype must be f32 or f16, got ${JSON.stringify(dtype)}`);
    }
    this.kvHeads = kvHeads;
    this.headDim = headDim;
    this.maxSeq = maxSeq;
    this.dtype = dtype;
    const shape = [kvHeads, maxSeq, dtype === 'f16' ? 2 * rowWords(headDim, dtype) : headDim];
    // ctx.tensor refuses sizes beyond maxBufferSize / maxStorageBufferBindingSize with ERR_GPU_LIMIT.
    this.k = ctx.tensor(shape, dtype, undefined, `${label}.k`);
    try {
      this.v = ctx.tensor(shape, dtype, undefined, `${label}.v`);
    } catch (err) {
      this.k.buffer.destroy();
      throw err;
    }
    this.pipeline = ctx.pipeline({ op: 'kv-append', dtype, workgroup: WG }, code, { WG, F16: dtype === 'f16' ? 1 : 0 });
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
   * length .. length + T - 1 (rounded to the nearest f16, ties to even, in an f16 cache) and
   * advances length at once, so attention recorded next sees them.
   */
  append(encoder: GPUCommandEncoder, k: GpuTensor, v: GpuTensor): void {
    this.checkLive();
    expectDtype('kv-cache', 'k', k, ['f32']);
    expectDtype('kv-cache', 'v', v, ['f32']);
    expectShape('kv-cache', 'k', k, [null, this.kvHeads, this.headDim]);
    expectShape('kv-cache', 'v', v, k.shape);
    const tokens = k.shape[0]!;
    this.checkRoom(tokens);
    if (tokens === 0) return;
    const n = tokens * this.kvHeads * rowWords(this.headDim, this.dtype);
    const params = this.ctx.ownedUniform(this, 'kv-append', encoder, new Uint32Array([n, this.kvHeads, this.headDim, this.maxSeq, this.cached]));
    const grid = elementGrid(n, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, this.pipeline, [k.buffer, v.buffer, this.k.buffer, this.v.buffer, params], grid);
    this.cached += tokens;
  }

  /**
   * For a kernel that writes T rows itself (rope-append.ts): checks there is room, advances length
   * at once (attention recorded next sees them) and returns the first position to write.
   */
  reserve(tokens: number): number {
    this.checkLive();
    expectInteger('kv-cache', 'tokens', tokens, 0);
    this.checkRoom(tokens);
    const start = this.cached;
    this.cached += tokens;
    return start;
  }

  private checkRoom(tokens: number): void {
    if (this.cached + tokens > this.maxSeq) {
      throw new AigridError(
        'ERR_INVALID_ARGUMENT',
        `kv-cache: appending ${tokens} tokens at length ${this.cached} exceeds maxSeq ${this.maxSeq} (the model's context length)`,
      );
    }
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
    this.ctx.dropOwned(this);
  }
}
