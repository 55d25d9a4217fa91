// The GPU context: owns the device, the pipeline cache and a buffer pool, turns device loss and
// uncaptured errors into named errors, and refuses requests beyond the adapter's limits.
import { AigridError } from '../protocol/index.ts';
import { dataBytes, type DType, type GpuTensor } from './tensor.ts';

/** Limits we ask the adapter for in full (the defaults are far lower than real GPUs allow). */
const REQUESTED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

export interface GpuContextOptions {
  /** navigator.gpu in browsers; nodeGpu() in Node. */
  gpu?: GPU;
  adapter?: GPUAdapter;
  /** Turn native f16 arithmetic off even where the adapter has shader-f16. */
  disableF16?: boolean;
}

/** What makes two pipelines the same: the op, its dtype path and its tuning constants. */
export interface PipelineKey {
  op: string;
  dtype: string;
  vector?: number;
  workgroup?: number;
  variant?: string;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  description: string;
  isFallbackAdapter: boolean;
}

type Readback = Float32Array | Uint32Array | Int32Array;

export class GpuContext {
  readonly device: GPUDevice;
  /** Native f16 arithmetic (shader-f16) is available and enabled. */
  readonly f16: boolean;
  readonly limits: GPUSupportedLimits;
  readonly adapter: AdapterSummary;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pool = new Map<string, GPUBuffer[]>();
  private pendingTemps: GPUBuffer[] = [];
  private lostError: AigridError | null = null;
  private readonly errorListeners = new Set<(err: AigridError) => void>();

  /** Held so the instance outlives the device: Dawn in Node frees a collected GPU object's instance. */
  private readonly owners: readonly unknown[];

  private constructor(device: GPUDevice, f16: boolean, adapter: AdapterSummary, owners: unknown[]) {
    this.device = device;
    this.owners = owners;
    this.f16 = f16;
    this.limits = device.limits;
    this.adapter = adapter;
    void device.lost.then((info) => {
      this.lostError = new AigridError('ERR_GPU_DEVICE_LOST', `GPU device lost (${info.reason}): ${info.message}`);
      for (const fn of this.errorListeners) fn(this.lostError);
    });
    device.addEventListener('uncapturederror', (event) => {
      const err = new AigridError('ERR_GPU_ERROR', (event as GPUUncapturedErrorEvent).error.message);
      for (const fn of this.errorListeners) fn(err);
    });
  }

  static async create(options: GpuContextOptions = {}): Promise<GpuContext> {
    const gpu = options.gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
    if (!gpu && !options.adapter) throw new AigridError('ERR_NO_WEBGPU', 'navigator.gpu is not available here');
    const adapter = options.adapter ?? (await gpu!.requestAdapter({ powerPreference: 'high-performance' }));
    if (!adapter) throw new AigridError('ERR_NO_WEBGPU', 'requestAdapter() returned no adapter');
    const f16 = !options.disableF16 && adapter.features.has('shader-f16');
    const requiredLimits: Record<string, number> = {};
    for (const name of REQUESTED_LIMITS) requiredLimits[name] = Number(adapter.limits[name]);
    const device = await adapter.requestDevice({
      label: 'aigrid',
      requiredFeatures: f16 ? ['shader-f16'] : [],
      requiredLimits,
    });
    const info = adapter.info;
    return new GpuContext(device, f16, {
      vendor: info?.vendor ?? '',
      architecture: info?.architecture ?? '',
      description: info?.description ?? '',
      isFallbackAdapter: Boolean((info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter),
    }, [gpu, adapter]);
  }

  /** Called with device loss and uncaptured GPU errors; returns an unsubscribe function. */
  onError(listener: (err: AigridError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** Throws the named error if the device was lost. */
  checkAlive(): void {
    if (this.lostError) throw this.lostError;
  }

  /** A compute pipeline, built once per key; tuning reaches WGSL only as override constants. */
  pipeline(key: PipelineKey, code: string, constants: Record<string, number> = {}, entryPoint = 'main'): GPUComputePipeline {
    this.checkAlive();
    const id = JSON.stringify([key.op, key.dtype, key.vector ?? 0, key.workgroup ?? 0, key.variant ?? '', entryPoint, constants]);
    let pipeline = this.pipelines.get(id);
    if (!pipeline) {
      let module = this.modules.get(code);
      if (!module) {
        module = this.device.createShaderModule({ label: key.op, code });
        this.modules.set(code, module);
      }
      const label = `${key.op}/${key.dtype}${key.variant ? `/${key.variant}` : ''}`;
      pipeline = this.device.createComputePipeline({ label, layout: 'auto', compute: { module, entryPoint, constants } });
      this.pipelines.set(id, pipeline);
    }
    return pipeline;
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** Fails with a named error when a buffer of this size cannot be bound as one storage binding. */
  checkBindingSize(what: string, bytes: number): void {
    if (bytes > this.limits.maxBufferSize) {
      throw new AigridError('ERR_GPU_LIMIT', `${what}: ${bytes} bytes exceed maxBufferSize (${this.limits.maxBufferSize})`);
    }
    if (bytes > this.limits.maxStorageBufferBindingSize) {
      throw new AigridError(
        'ERR_GPU_LIMIT',
        `${what}: ${bytes} bytes exceed maxStorageBufferBindingSize (${this.limits.maxStorageBufferBindingSize}); split it by rows`,
      );
    }
  }

  /** Creates a storage tensor, optionally filled from `data` (already in the dtype's layout). */
  tensor(shape: readonly number[], dtype: DType, data?: ArrayBufferView, label = 'tensor'): GpuTensor {
    this.checkAlive();
    const byteLength = dataBytes(shape, dtype);
    this.checkBindingSize(label, byteLength);
    if (data && data.byteLength !== byteLength) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `${label}: ${data.byteLength} bytes of data for [${shape.join(', ')}] ${dtype} (needs ${byteLength})`);
    }
    const buffer = this.device.createBuffer({
      label,
      size: Math.max(4, Math.ceil(byteLength / 4) * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    if (data) this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return { label, shape: [...shape], dtype, buffer, byteLength };
  }

  /** A quantized weight: packed data plus its scales (see tensor.ts for the layouts). */
  quantizedTensor(
    shape: readonly number[],
    dtype: 'q8' | 'q4',
    data: Uint32Array,
    scales: Float32Array | Uint32Array,
    scaleDtype: 'f32' | 'f16',
    label = 'weight',
  ): GpuTensor {
    const main = this.tensor(shape, dtype, data, label);
    this.checkBindingSize(`${label}.scales`, scales.byteLength);
    const scaleBuffer = this.device.createBuffer({
      label: `${label}.scales`,
      size: Math.max(4, Math.ceil(scales.byteLength / 4) * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    this.device.queue.writeBuffer(scaleBuffer, 0, scales.buffer, scales.byteOffset, scales.byteLength);
    return { ...main, scales: scaleBuffer, scaleDtype };
  }

  /** A small uniform buffer from the pool, returned to it once the next submit completes. */
  uniform(data: ArrayBufferView): GPUBuffer {
    const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
    const buffer = this.acquire(size, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'uniform');
    this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    this.pendingTemps.push(buffer);
    return buffer;
  }

  /** A pooled buffer; give it back with release() when the GPU is done with it. */
  acquire(size: number, usage: number, label = 'pooled'): GPUBuffer {
    const list = this.pool.get(`${usage}:${size}`);
    return list?.pop() ?? this.device.createBuffer({ label, size, usage });
  }

  release(buffer: GPUBuffer): void {
    const key = `${buffer.usage}:${buffer.size}`;
    const list = this.pool.get(key) ?? [];
    list.push(buffer);
    this.pool.set(key, list);
  }

  bindGroup(pipeline: GPUComputePipeline, buffers: readonly GPUBuffer[]): GPUBindGroup {
    return this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
  }

  /** Records one dispatch into the caller's encoder. */
  dispatch(
    encoder: GPUCommandEncoder,
    pipeline: GPUComputePipeline,
    buffers: readonly GPUBuffer[],
    workgroups: readonly [number, number?, number?],
  ): void {
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    for (const count of workgroups) {
      if (count !== undefined && count > max) {
        throw new AigridError('ERR_GPU_LIMIT', `${pipeline.label}: ${count} workgroups exceed maxComputeWorkgroupsPerDimension (${max})`);
      }
    }
    const pass = encoder.beginComputePass({ label: pipeline.label });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, this.bindGroup(pipeline, buffers));
    pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
    pass.end();
  }

  encoder(label = 'aigrid'): GPUCommandEncoder {
    this.checkAlive();
    return this.device.createCommandEncoder({ label });
  }

  submit(encoder: GPUCommandEncoder): void {
    this.checkAlive();
    this.device.queue.submit([encoder.finish()]);
    const temps = this.pendingTemps;
    this.pendingTemps = [];
    if (temps.length) void this.device.queue.onSubmittedWorkDone().then(() => temps.forEach((b) => this.release(b)));
  }

  /** Runs fn inside validation and out-of-memory error scopes; a GPU error becomes ERR_GPU_ERROR. */
  async scoped<T>(fn: () => T | Promise<T>): Promise<T> {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    let result: T;
    try {
      result = await fn();
    } finally {
      const validation = await this.device.popErrorScope();
      const memory = await this.device.popErrorScope();
      const err = validation ?? memory;
      if (err) throw new AigridError('ERR_GPU_ERROR', err.message);
    }
    return result;
  }

  /** Copies a tensor back to the CPU as the typed array of its storage. */
  async read(tensor: GpuTensor): Promise<Readback> {
    const bytes = tensor.byteLength;
    const staging = this.acquire(Math.max(4, Math.ceil(bytes / 4) * 4), GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'readback');
    const encoder = this.encoder('readback');
    encoder.copyBufferToBuffer(tensor.buffer, 0, staging, 0, staging.size);
    this.submit(encoder);
    await staging.mapAsync(GPUMapMode.READ);
    this.checkAlive();
    const copy = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    this.release(staging);
    if (tensor.dtype === 'f32') return new Float32Array(copy);
    if (tensor.dtype === 'i32') return new Int32Array(copy);
    return new Uint32Array(copy);
  }

  destroy(): void {
    for (const list of this.pool.values()) list.forEach((b) => b.destroy());
    this.pool.clear();
    this.pipelines.clear();
    this.device.destroy();
  }
}
