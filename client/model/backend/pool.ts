// Activation buffers of one forward pass. Sizes are rounded up to quarter octaves so that passes of
// different token counts reuse each other's buffers. A buffer freed during recording serves later
// ops of the same pass (passes in one encoder run in order); every buffer the pass took goes back
// to the context's pool only once its submit has completed.
import type { GpuContext } from '../../../kernels/context.ts';

const MIN_BYTES = 256;

/** The bucket a tensor of `bytes` bytes is allocated from; never above `limit` unless bytes is. */
export function bucketBytes(bytes: number, limit: number): number {
  if (bytes <= MIN_BYTES) return MIN_BYTES;
  const step = 2 ** Math.floor(Math.log2(bytes)) / 4;
  const rounded = Math.ceil(bytes / step) * step;
  return rounded <= limit ? rounded : Math.ceil(bytes / 4) * 4;
}

export function activationUsage(): number {
  return GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
}

export class PassBuffers {
  /** Every buffer taken from the context during this pass. */
  private readonly taken: GPUBuffer[] = [];
  /** Freed during recording, by size: free for later ops of this pass. */
  private readonly spare = new Map<number, GPUBuffer[]>();
  /** Buffers whose contents later ops may still read. */
  private readonly live = new Set<GPUBuffer>();

  constructor(private readonly ctx: GpuContext) {}

  take(bytes: number, label: string): GPUBuffer {
    this.ctx.checkBindingSize(label, bytes);
    const limit = Math.min(this.ctx.limits.maxStorageBufferBindingSize, this.ctx.limits.maxBufferSize);
    const size = bucketBytes(bytes, limit);
    let buffer = this.spare.get(size)?.pop();
    if (!buffer) {
      buffer = this.ctx.acquire(size, activationUsage(), 'activation');
      this.taken.push(buffer);
    }
    this.live.add(buffer);
    return buffer;
  }

  /** Buffers not taken by this pass (weights, caches) are ignored; freeing twice is harmless. */
  give(buffer: GPUBuffer): void {
    if (!this.live.delete(buffer)) return;
    const list = this.spare.get(buffer.size) ?? [];
    list.push(buffer);
    this.spare.set(buffer.size, list);
  }

  /** Call once the GPU is done with the pass (or when it was never submitted). */
  releaseAll(): void {
    for (const buffer of this.taken) this.ctx.release(buffer);
    this.taken.length = 0;
    this.spare.clear();
    this.live.clear();
  }

  /** Bytes of activation buffers this pass holds. */
  get bytes(): number {
    return this.taken.reduce((sum, b) => sum + b.size, 0);
  }
}
