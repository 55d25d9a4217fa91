// The WebGPU backend on a GpuContext: weights uploaded through kernels/weights.ts, KV caches from
// kernels/kv-cache.ts, and each forward pass recorded into one command encoder, submitted once and
// read back through one staging copy.
import { AigridError } from '../../../protocol/index.ts';
import { dequantizeGgml, type GgmlBlocks } from '../../../kernels/ggml-quants.ts';
import { uploadGgmlWeight } from '../../../kernels/ggml-weights.ts';
import type { GpuContext } from '../../../kernels/context.ts';
import { uploadTable, type GpuTable } from '../../../kernels/embedding.ts';
import { KvCache, kvCacheBytes } from '../../../kernels/kv-cache.ts';
import type { GpuTensor } from '../../../kernels/tensor.ts';
import { uploadWeight, type GpuWeight } from '../../../kernels/weights.ts';
import { PassBuffers } from './pool.ts';
import type { Backend, KvStore, KvStoreOptions, Ops, Table, Tensor, Weight, WeightDtype } from './types.ts';
import { GpuKernels } from './webgpu-kernels.ts';
import { ErrorScopes } from './webgpu-scope.ts';
import { gpuTensor, WebGpuOps } from './webgpu-ops.ts';

export interface WebGpuBackendOptions {
  /**
   * Largest binding a lookup table's part may need (default and ceiling: the adapter's limits).
   * Tables past it are split by rows; tests set it low to split the fixtures' small tables.
   */
  maxTableBindingBytes?: number;
}

export class WebGpuBackend implements Backend {
  readonly kind = 'webgpu' as const;
  /** Layers stack their projections at load and run layers/fused.ts's ops (see webgpu-ops.ts). */
  readonly fusesWeights = true;
  readonly description: string;
  private readonly kernels: GpuKernels;
  private readonly scopes: ErrorScopes;

  /** `owned`: destroy() also destroys the context (it was created for this backend). */
  constructor(
    readonly ctx: GpuContext,
    private readonly owned = false,
    private readonly options: WebGpuBackendOptions = {},
  ) {
    this.kernels = new GpuKernels(ctx);
    this.scopes = new ErrorScopes(ctx.device);
    const a = ctx.adapter;
    this.description = [a.vendor, a.architecture, a.description].filter(Boolean).join(' ') || 'webgpu';
  }

  weight(data: Float32Array, shape: readonly [number, number], dtype: WeightDtype, label: string): Weight {
    return this.scopes.track(() => uploadWeight(this.ctx, data, shape, dtype, { label }));
  }

  constant(data: Float32Array, shape: readonly number[], label: string): Tensor {
    return this.scopes.track(() => this.ctx.tensor(shape, 'f32', data, label));
  }

  table(data: Float32Array, shape: readonly [number, number], dtype: 'f32' | 'f16', label: string): Table {
    const maxBindingBytes = this.options.maxTableBindingBytes;
    return this.scopes.track(() => uploadTable(this.ctx, data, shape, dtype, { maxBindingBytes, label }));
  }

  quantizedWeight(m: GgmlBlocks, label: string): Weight {
    return this.scopes.track(() => uploadGgmlWeight(this.ctx, m, { label }));
  }

  quantizedTable(m: GgmlBlocks, dtype: 'f32' | 'f16', label: string): Table {
    return this.table(dequantizeGgml(m.type, m.bytes, m.rows * m.cols), [m.rows, m.cols], dtype, label);
  }

  tableOf(weight: Weight): Table | null {
    const w = weight as GpuWeight;
    if (w.dtype !== 'f32' && w.dtype !== 'f16') return null;
    // The weight's row parts are the table's: it shares their buffers (dispose the weight, not the table).
    const table: GpuTable = { shape: w.shape, dtype: w.dtype, parts: w.parts };
    return table;
  }

  kvBytes(options: KvStoreOptions): number {
    return kvCacheBytes(options);
  }

  /** Allocation errors surface in the pass that uses the store (create it inside run). */
  kvStore(options: KvStoreOptions): KvStore {
    return new KvCache(this.ctx, options);
  }

  settle(): Promise<void> {
    return this.scopes.settle();
  }

  run(record: (ops: Ops) => Tensor): Promise<Float32Array> {
    this.ctx.checkAlive();
    const started = performance.now();
    const buffers = new PassBuffers(this.ctx);
    const encoder = this.ctx.encoder('forward');
    // The pass's dispatches share compute passes (a copy between them ends one).
    this.ctx.sharePasses(encoder);
    const scope = this.scopes.open();
    let staging: GPUBuffer;
    let bytes: number;
    try {
      const out = gpuTensor(record(new WebGpuOps(this.ctx, this.kernels, encoder, buffers)));
      if (out.dtype !== 'f32') throw new AigridError('ERR_INVALID_ARGUMENT', `webgpu backend: a pass returns f32, got ${out.dtype}`);
      bytes = out.byteLength;
      staging = this.ctx.acquire(Math.max(4, bytes), GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'readback');
      if (bytes) this.ctx.commands(encoder).copyBufferToBuffer(out.buffer, 0, staging, 0, bytes);
      // Encoding: recording and the read-back copy; the submit is counted apart (submitMs).
      this.ctx.addEncodeTime(performance.now() - started);
      this.ctx.submit(encoder);
    } catch (err) {
      // Nothing was submitted: the buffers are free again at once.
      void scope.close();
      buffers.releaseAll();
      throw err;
    }
    const gpuError = scope.close();
    return this.readBack(staging, bytes, buffers, gpuError);
  }

  private async readBack(staging: GPUBuffer, bytes: number, buffers: PassBuffers, gpuError: Promise<AigridError | null>): Promise<Float32Array> {
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (err) {
      this.ctx.checkAlive();
      throw new AigridError('ERR_GPU_ERROR', `reading the pass back failed: ${(err as Error).message}`, { cause: err });
    }
    const values = new Float32Array(staging.getMappedRange().slice(0, bytes));
    staging.unmap();
    // The map resolved, so the pass has completed: its buffers may serve the next one.
    this.ctx.release(staging);
    buffers.releaseAll();
    const err = await gpuError;
    if (err) throw err;
    return values;
  }

  dispose(item: Weight | Tensor | Table): void {
    // Weights and tables alike are row parts.
    if ('parts' in item) {
      for (const part of (item as GpuWeight | GpuTable).parts) {
        part.tensor.buffer.destroy();
        part.tensor.scales?.destroy();
      }
    } else if ('buffer' in item) {
      (item as GpuTensor).buffer.destroy();
    }
  }

  destroy(): void {
    this.kernels.destroy();
    if (this.owned) this.ctx.destroy();
  }
}
