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
  /** Leave subgroup operations off even where the adapter has them. */
  disableSubgroups?: boolean;
}

/** The subgroup sizes the adapter may pick for a pipeline (powers of two). */
export interface SubgroupSizes {
  min: number;
  max: number;
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
  /** The device's name where the implementation gives it (Dawn: e.g. the GPU's product name). */
  device?: string;
  description: string;
  isFallbackAdapter: boolean;
}

type Readback = Float32Array | Uint32Array | Int32Array;

/** Distinct uniform contents and group-0 bind groups kept (a few layers' worth of decode steps). */
const UNIFORM_CACHE = 4096;
const GROUP_CACHE = 8192;

function sameWords(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The entries used lately, at most `cap`: two generations, so that a hit is one lookup with no
 * reordering (a decode step looks up dozens); when the young one fills, the old one is dropped.
 */
class RecentCache<V> {
  private young = new Map<string, V>();
  private old = new Map<string, V>();
  constructor(private readonly cap: number) {}

  get(key: string): V | undefined {
    const value = this.young.get(key);
    if (value !== undefined) return value;
    const aged = this.old.get(key);
    if (aged !== undefined) this.set(key, aged);
    return aged;
  }

  set(key: string, value: V): void {
    this.young.set(key, value);
    if (this.young.size >= this.cap / 2) {
      this.old = this.young;
      this.young = new Map();
    }
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
  }
}

/** What the context has recorded and submitted so far (a snapshot; subtract two to measure a span). */
export interface GpuCounters {
  /** Compute passes begun. */
  passes: number;
  /** Dispatches recorded (a pass may hold several). */
  dispatches: number;
  /** Bind groups made (a decode step in its steady state finds its groups rather than making them). */
  bindGroups: number;
  /** Queue submits. */
  submits: number;
  /** JS time spent recording passes, as reported by their recorders (addEncodeTime). */
  encodeMs: number;
  /** JS time spent in queue.submit (where a driver does work at submit, it shows here). */
  submitMs: number;
}

/** b - a, field by field. */
export function countersBetween(a: GpuCounters, b: GpuCounters): GpuCounters {
  return { passes: b.passes - a.passes, dispatches: b.dispatches - a.dispatches, bindGroups: b.bindGroups - a.bindGroups, submits: b.submits - a.submits, encodeMs: b.encodeMs - a.encodeMs, submitMs: b.submitMs - a.submitMs };
}

export class GpuContext {
  readonly device: GPUDevice;
  /** Native f16 arithmetic (shader-f16) is available and enabled. */
  readonly f16: boolean;
  /** Subgroup operations (`subgroups`) are enabled, with the sizes the adapter gives; else null. */
  readonly subgroups: SubgroupSizes | null;
  readonly limits: GPUSupportedLimits;
  readonly adapter: AdapterSummary;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pool = new Map<string, GPUBuffer[]>();
  private lostError: AigridError | null = null;
  private readonly errorListeners = new Set<(err: AigridError) => void>();
  private readonly counts: GpuCounters = { passes: 0, dispatches: 0, bindGroups: 0, submits: 0, encodeMs: 0, submitMs: 0 };
  /** Compute passes kept open per encoder for sharePasses (null: none open now). */
  private readonly openPasses = new WeakMap<GPUCommandEncoder, GPUComputePassEncoder | null>();
  /** Cached group-1 bind groups per first constant buffer (see constantGroup). */
  private readonly constantGroups = new WeakMap<GPUBuffer, Map<string, GPUBindGroup>>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private lastBufferId = 0;
  private readonly pipelineIds = new Map<GPUComputePipeline, number>();
  private readonly uniforms = new RecentCache<GPUBuffer>(UNIFORM_CACHE);
  private readonly groups = new RecentCache<GPUBindGroup>(GROUP_CACHE);
  /** ownedUniform's buffers by owner and slot, with their content and the encoders not yet submitted that bound them. */
  private readonly owned = new WeakMap<object, Map<string, { buffer: GPUBuffer; words: Uint32Array; users: GPUCommandEncoder[] }>>();
  /** Encoders that went through submit(). */
  private readonly submitted = new WeakSet<GPUCommandEncoder>();

  /** Held so the instance outlives the device: Dawn in Node frees a collected GPU object's instance. */
  private readonly owners: readonly unknown[];

  private constructor(device: GPUDevice, f16: boolean, subgroups: SubgroupSizes | null, adapter: AdapterSummary, owners: unknown[]) {
    this.device = device;
    this.owners = owners;
    this.f16 = f16;
    this.subgroups = subgroups;
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
    const info = adapter.info;
    // Kernels choose subgroup paths by the sizes the adapter may pick: without them, none.
    const sizes = { min: Number(info?.subgroupMinSize), max: Number(info?.subgroupMaxSize) };
    const subgroups = !options.disableSubgroups && adapter.features.has('subgroups') && sizes.min > 0 && sizes.max >= sizes.min ? sizes : null;
    const requiredFeatures: GPUFeatureName[] = [];
    if (f16) requiredFeatures.push('shader-f16');
    if (subgroups) requiredFeatures.push('subgroups');
    const requiredLimits: Record<string, number> = {};
    for (const name of REQUESTED_LIMITS) requiredLimits[name] = Number(adapter.limits[name]);
    const device = await adapter.requestDevice({ label: 'aigrid', requiredFeatures, requiredLimits });
    return new GpuContext(device, f16, subgroups, {
      vendor: info?.vendor ?? '',
      architecture: info?.architecture ?? '',
      device: info?.device ?? '',
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
    // Built by hand rather than JSON.stringify: a decode step asks dozens of times.
    let id = `${key.op}|${key.dtype}|${key.vector ?? 0}|${key.workgroup ?? 0}|${key.variant ?? ''}|${entryPoint}`;
    for (const name in constants) id += `|${name}=${constants[name]}`;
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
      this.pipelineIds.set(pipeline, this.pipelineIds.size + 1);
    }
    return pipeline;
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** Passes, dispatches and submits so far, and the encode time recorders reported. */
  counters(): GpuCounters {
    return { ...this.counts };
  }

  /** A recorder (the WebGPU backend's forward pass) reports the JS time it spent encoding. */
  addEncodeTime(ms: number): void {
    this.counts.encodeMs += ms;
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

  /**
   * A small uniform buffer holding `data`, never written again: one per distinct content, so a
   * decode step finds the buffers (and bind groups) of the step before. About the UNIFORM_CACHE
   * most recently used contents are kept; another is dropped, not destroyed (commands recorded with it
   * may still be pending; the buffer goes with its last reference).
   */
  uniform(data: ArrayBufferView): GPUBuffer {
    const aligned = data.byteLength % 4 === 0 && data.byteOffset % 4 === 0;
    const view = aligned ? new Uint32Array(data.buffer, data.byteOffset, data.byteLength / 4) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const key = `${aligned ? 'w' : 'b'}${view.join(',')}`;
    let buffer = this.uniforms.get(key);
    if (buffer) return buffer;
    const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
    buffer = this.device.createBuffer({ label: 'uniform', size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    this.uniforms.set(key, buffer);
    return buffer;
  }

  /**
   * A uniform buffer of `owner`'s own (a KV cache) for `slot`, rewritten in place when its content
   * changes: values that move every step (the cache's length) keep one buffer, so the bind groups
   * holding it are found rather than made each step. queue.writeBuffer is ordered after every pass
   * submitted before it, which read the old value; so it is rewritten only once every encoder that
   * bound it went through submit(). Otherwise (a second content in one pass, or a pass not yet
   * submitted) the content gets a buffer of its own, as uniform() gives.
   */
  ownedUniform(owner: object, slot: string, encoder: GPUCommandEncoder, data: Uint32Array): GPUBuffer {
    let slots = this.owned.get(owner);
    if (!slots) this.owned.set(owner, (slots = new Map()));
    let entry = slots.get(slot);
    if (entry) entry.users = entry.users.filter((user) => !this.submitted.has(user));
    if (entry && sameWords(entry.words, data)) {
      if (!entry.users.includes(encoder)) entry.users.push(encoder);
      return entry.buffer;
    }
    if (entry && entry.users.length > 0) return this.uniform(data);
    if (!entry || entry.buffer.size < data.byteLength) {
      entry?.buffer.destroy();
      const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
      entry = { buffer: this.device.createBuffer({ label: `uniform.${slot}`, size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }), words: data, users: [] };
      slots.set(slot, entry);
    }
    this.device.queue.writeBuffer(entry.buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    entry.words = data.slice();
    entry.users.push(encoder);
    return entry.buffer;
  }

  /** Destroys an owner's uniforms (ownedUniform); passes submitted with them still complete. */
  dropOwned(owner: object): void {
    for (const entry of this.owned.get(owner)?.values() ?? []) entry.buffer.destroy();
    this.owned.delete(owner);
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

  /** Buffer i is binding i of the group; a hole (undefined) is a binding the pipeline does not have. */
  bindGroup(pipeline: GPUComputePipeline, buffers: readonly (GPUBuffer | undefined)[], group = 0): GPUBindGroup {
    const entries: GPUBindGroupEntry[] = [];
    buffers.forEach((buffer, binding) => buffer && entries.push({ binding, resource: { buffer } }));
    this.counts.bindGroups++;
    return this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(group), entries });
  }

  /**
   * Group 1 of a pipeline over buffers that outlive passes (a weight, its scales, a norm's weight,
   * a bias): made on first use and kept as long as the weight's buffer, so decode steps create
   * only their activations' group.
   */
  private constantGroup(pipeline: GPUComputePipeline, buffers: readonly (GPUBuffer | undefined)[]): GPUBindGroup {
    const first = buffers.find((b): b is GPUBuffer => b !== undefined)!;
    let byPipeline = this.constantGroups.get(first);
    if (!byPipeline) this.constantGroups.set(first, (byPipeline = new Map()));
    const key = `${this.pipelineIds.get(pipeline) ?? 0}:${buffers.map((b) => (b ? this.bufferId(b) : '-')).join(',')}`;
    let group = byPipeline.get(key);
    if (!group) byPipeline.set(key, (group = this.bindGroup(pipeline, buffers, 1)));
    return group;
  }

  /**
   * Group 0 by pipeline and buffers: a decode step binds the same pooled activations and uniforms
   * as the one before, so its groups are found rather than made. Buffers have ids that are never
   * reused, so a destroyed buffer's groups are simply never asked for again (and age out).
   */
  private cachedGroup(pipeline: GPUComputePipeline, buffers: readonly (GPUBuffer | undefined)[]): GPUBindGroup {
    let key = String(this.pipelineIds.get(pipeline) ?? 0);
    for (const b of buffers) key += b ? `,${this.bufferId(b)}` : ',-';
    let group = this.groups.get(key);
    if (!group) this.groups.set(key, (group = this.bindGroup(pipeline, buffers)));
    return group;
  }

  private bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) this.bufferIds.set(buffer, (id = ++this.lastBufferId));
    return id;
  }

  /**
   * Records one dispatch into the caller's encoder: `buffers` are group 0 (made per dispatch),
   * `constants` group 1 (cached, see constantGroup). In an encoder given to sharePasses, dispatches
   * share one compute pass until a copy needs the encoder (commands) or it is submitted.
   */
  dispatch(
    encoder: GPUCommandEncoder,
    pipeline: GPUComputePipeline,
    buffers: readonly (GPUBuffer | undefined)[],
    workgroups: readonly [number, number?, number?],
    constants?: readonly (GPUBuffer | undefined)[],
  ): void {
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    for (const count of workgroups) {
      if (count !== undefined && count > max) {
        throw new AigridError('ERR_GPU_LIMIT', `${pipeline.label}: ${count} workgroups exceed maxComputeWorkgroupsPerDimension (${max})`);
      }
    }
    const group0 = this.cachedGroup(pipeline, buffers);
    const group1 = constants ? this.constantGroup(pipeline, constants) : undefined;
    const shared = this.openPasses.has(encoder);
    let pass = this.openPasses.get(encoder);
    if (!pass) {
      pass = encoder.beginComputePass({ label: shared ? 'shared' : pipeline.label });
      this.counts.passes++;
      if (shared) this.openPasses.set(encoder, pass);
    }
    this.counts.dispatches++;
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group0);
    if (group1) pass.setBindGroup(1, group1);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
    if (!shared) pass.end();
  }

  /** Dispatches into this encoder share compute passes (a forward pass: dozens of dispatches). */
  sharePasses(encoder: GPUCommandEncoder): void {
    if (!this.openPasses.has(encoder)) this.openPasses.set(encoder, null);
  }

  /** The encoder, ready for a copy or clear: ends the compute pass its dispatches share, if open. */
  commands(encoder: GPUCommandEncoder): GPUCommandEncoder {
    const pass = this.openPasses.get(encoder);
    if (pass) {
      pass.end();
      this.openPasses.set(encoder, null);
    }
    return encoder;
  }

  encoder(label = 'aigrid'): GPUCommandEncoder {
    this.checkAlive();
    return this.device.createCommandEncoder({ label });
  }

  submit(encoder: GPUCommandEncoder): void {
    this.checkAlive();
    this.commands(encoder);
    this.openPasses.delete(encoder);
    const commands = encoder.finish();
    this.submitted.add(encoder);
    const started = performance.now();
    this.device.queue.submit([commands]);
    this.counts.submitMs += performance.now() - started;
    this.counts.submits++;
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
    this.pipelineIds.clear();
    this.uniforms.clear();
    this.groups.clear();
    this.device.destroy();
  }
}
