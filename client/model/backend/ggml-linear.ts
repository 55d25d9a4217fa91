// The CPU backend's linear over GGML-quantized weights: out [M, N] = x [M, K] · wᵀ for w [N, K] as a
// GGUF file stores it (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K), with f32 activations. Decode is memory-bound, and
// these weights are 4 to 7 times smaller than f32, so they are never expanded: a runtime keeps them
// repacked block for block (ggml-layout.ts) in one shared WebAssembly memory, and the SIMD kernels
// (ggml-wasm.ts) dequantize each block in registers. Rows of one call are split across worker
// threads that share the memory (ggml-threads.ts); each row's sum is computed whole by one thread in
// the order of kernels/cpu/ggml-linear.ts, so results are the same bits for any thread count, batch
// size or position in the batch, and equal to ggmlLinearRef, the plain-JS path where WebAssembly
// SIMD or shared memory is missing.
import { AigridError } from '../../../protocol/index.ts';
import { checkGgmlInput, checkGgmlWeight, ggmlLinearRef, groupSums } from '../../../kernels/cpu/ggml-linear.ts';
import type { GgmlBlocks, GgmlType } from '../../../kernels/ggml-quants.ts';
import { WasmHeap } from './wasm-heap.ts';
import { LAYOUTS, kernelFormatOf, repackBlocks } from './ggml-layout.ts';
import { KernelThreads, availableCores } from './ggml-threads.ts';
import { KERNEL_FORMATS, ggmlModuleBytes, runName, xsumBytesPerRow, type KernelFormat } from './ggml-wasm.ts';

export interface GgmlLinearOptions {
  /** Threads one call uses, the calling one included (default: the cores available; 1: no workers). */
  threads?: number;
  /** Multiply-adds (M · N · K) below which a call runs on the calling thread alone (waking workers costs more). */
  parallelThreshold?: number;
  /** false: the plain-JS path even where WebAssembly SIMD is available. */
  simd?: boolean;
}

/** 2^19 multiply-adds (a [512, 1024] matvec) take under 0.1 ms on one thread: about what waking a sleeping worker may cost. */
const PARALLEL_THRESHOLD = 1 << 19;
/** Weight bytes per tile when M > 4: every block of four x rows reads a tile while it is in cache. */
const TILE_BYTES = 128 * 1024;

type RunKernel = (x: number, xs: number, w: number, out: number, N: number, blocks: number, n0: number, n1: number, M: number, tile: number) => void;

interface SimdKernels {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  heap: WasmHeap;
  run: Record<KernelFormat, RunKernel>;
}

function createKernels(): SimdKernels | null {
  if (typeof WebAssembly === 'undefined' || typeof SharedArrayBuffer === 'undefined') return null;
  // 4 GiB is wasm32's limit; a runtime that cannot reserve it gets 1 GiB.
  for (const maxPages of [65536, 16384]) {
    try {
      const memory = new WebAssembly.Memory({ initial: 16, maximum: maxPages, shared: true });
      const module = new WebAssembly.Module(ggmlModuleBytes(maxPages));
      const exports = new WebAssembly.Instance(module, { env: { memory } }).exports;
      const run = Object.fromEntries(KERNEL_FORMATS.map((f) => [f, exports[runName(f)] as RunKernel])) as Record<KernelFormat, RunKernel>;
      return { memory, module, heap: new WasmHeap(memory, maxPages), run };
    } catch {
      // No SIMD, no shared memory (a page without cross-origin isolation), or no room: try less, then JS.
    }
  }
  return null;
}

/**
 * x [M, K] as the kernels read it: blocks of four rows (the last may have fewer) interleaved by
 * groups of four values, as cpu-linear.ts does; for Q4_K also each row's group sums, per block of
 * rows as [group][row] lanes of four.
 */
function stageInput(x: Float32Array, M: number, K: number, staged: Float32Array, sums: Float32Array | null): void {
  for (let m0 = 0; m0 < M; m0 += 4) {
    const mb = Math.min(4, M - m0);
    for (let i = 0; i < mb; i++) {
      const src = (m0 + i) * K;
      for (let k = 0, d = m0 * K + 4 * i; k < K; k += 4, d += 4 * mb) {
        staged[d] = x[src + k]!; staged[d + 1] = x[src + k + 1]!; staged[d + 2] = x[src + k + 2]!; staged[d + 3] = x[src + k + 3]!;
      }
      if (!sums) continue;
      const rowSums = groupSums(x, src, K);
      for (let g = 0, at = (m0 * K) / 8 + 4 * i; g < K / 32; g++, at += 4 * mb) sums.set(rowSums.subarray(4 * g, 4 * g + 4), at);
    }
  }
}

/** A quantized weight placed for `GgmlCpuRuntime`: freed by `destroy()` (or when garbage-collected). */
export class GgmlLinear {
  readonly type: GgmlType;
  readonly rows: number;
  readonly cols: number;
  private destroyed = false;

  /** @internal Use GgmlCpuRuntime.place. */
  constructor(
    private readonly runtime: GgmlCpuRuntime,
    w: GgmlBlocks,
    /** Byte address of the repacked rows in the shared memory; 0 on the JS path. */
    readonly addr: number,
    /** The weight as given, kept only on the JS path. */
    private readonly jsWeight: GgmlBlocks | null,
  ) {
    this.type = w.type;
    this.rows = w.rows;
    this.cols = w.cols;
  }

  /** out [M, rows] = x [M, cols] · wᵀ. */
  forward(x: Float32Array, M: number): Float32Array {
    if (this.destroyed) throw new AigridError('ERR_INVALID_ARGUMENT', 'ggml linear: the weight was destroyed');
    checkGgmlInput(x, M, this.cols);
    if (this.jsWeight) return ggmlLinearRef(x, this.jsWeight, M);
    return this.runtime.linear(this, x, M);
  }

  /** Frees the weight's memory; `forward` throws afterwards. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.runtime.release(this);
  }
}

/**
 * The shared memory, kernels and worker threads that GGML linears run on. Create it with `create`,
 * place weights, and `destroy` it to end its workers.
 */
export class GgmlCpuRuntime {
  private scratch = 0;
  private scratchSize = 0;
  private destroyed = false;
  private readonly finalizer = typeof FinalizationRegistry === 'function' ? new FinalizationRegistry<number>((addr) => this.kernels?.heap.release(addr)) : null;

  private constructor(
    private readonly kernels: SimdKernels | null,
    private readonly workers: KernelThreads | null,
    private readonly parallelThreshold: number,
  ) {}

  /**
   * A runtime with `threads` threads per call (default: the cores available), pages' main threads
   * included (they spin on the workers' shares, KernelThreads.wait).
   */
  static async create(options: GgmlLinearOptions = {}): Promise<GgmlCpuRuntime> {
    const kernels = options.simd === false ? null : createKernels();
    const wanted = options.threads ?? (await availableCores());
    if (!Number.isInteger(wanted) || wanted < 1) throw new AigridError('ERR_INVALID_ARGUMENT', `ggml linear: threads must be a positive integer, got ${wanted}`);
    const threads = kernels ? wanted : 1;
    const names = KERNEL_FORMATS.map(runName);
    const workers = threads > 1 ? await KernelThreads.spawn(threads - 1, kernels!.module, kernels!.memory, names) : null;
    return new GgmlCpuRuntime(kernels, workers, options.parallelThreshold ?? PARALLEL_THRESHOLD);
  }

  /** A runtime on the calling thread alone, made at once (no workers to wait for). */
  static single(options: Pick<GgmlLinearOptions, 'simd'> = {}): GgmlCpuRuntime {
    return new GgmlCpuRuntime(options.simd === false ? null : createKernels(), null, PARALLEL_THRESHOLD);
  }

  /** Threads a call may use, the calling one included. */
  get threads(): number {
    return (this.workers?.size ?? 0) + 1;
  }

  /** Whether calls run the WebAssembly SIMD kernels (else the plain-JS path). */
  get simd(): boolean {
    return this.kernels !== null;
  }

  /** Bytes of the shared memory in use (weights and scratch). */
  get bytesInUse(): number {
    return this.kernels?.heap.used ?? 0;
  }

  /** Copies `w` into the shared memory in the kernels' layout (or keeps it, on the JS path). */
  place(w: GgmlBlocks): GgmlLinear {
    if (this.destroyed) throw new AigridError('ERR_INVALID_ARGUMENT', 'ggml linear: the runtime was destroyed');
    checkGgmlWeight(w);
    const layout = LAYOUTS[kernelFormatOf(w.type)!];
    const blocks = (w.rows * w.cols) / layout.blockElements;
    const addr = this.kernels && blocks > 0 ? this.kernels.heap.alloc(blocks * layout.blockBytes) : 0;
    if (!addr) return new GgmlLinear(this, w, 0, w); // no kernels, nothing to hold, or no room: JS
    repackBlocks(layout, w.bytes, blocks, new Uint8Array(this.kernels!.memory.buffer, addr, blocks * layout.blockBytes));
    const linear = new GgmlLinear(this, w, addr, null);
    this.finalizer?.register(linear, addr, linear);
    return linear;
  }

  /** Ends the workers; placed weights must not be used afterwards. */
  destroy(): void {
    this.destroyed = true;
    this.workers?.destroy();
  }

  /** @internal */
  release(w: GgmlLinear): void {
    if (!w.addr || !this.kernels) return;
    this.finalizer?.unregister(w);
    this.kernels.heap.release(w.addr);
  }

  /** @internal The SIMD path of GgmlLinear.forward. */
  linear(w: GgmlLinear, x: Float32Array, M: number): Float32Array {
    if (this.destroyed) throw new AigridError('ERR_INVALID_ARGUMENT', 'ggml linear: the runtime was destroyed');
    const { rows: N, cols: K } = w;
    const kernels = this.kernels!;
    const format = kernelFormatOf(w.type)!;
    const layout = LAYOUTS[format];
    if (M === 0 || N === 0 || K === 0) return new Float32Array(M * N);
    const xsBytes = format === 'q4_k' ? M * xsumBytesPerRow(K) : 0;
    const base = this.scratchOf(M * K * 4 + xsBytes + M * N * 4);
    if (!base) throw new AigridError('ERR_INSUFFICIENT_MEMORY', `ggml linear: no room for a [${M}, ${K}] x [${N}, ${K}] call in the shared memory`);
    const xs = base + M * K * 4, out = xs + xsBytes;
    const buffer = kernels.memory.buffer;
    stageInput(x, M, K, new Float32Array(buffer, base, M * K), xsBytes ? new Float32Array(buffer, xs, xsBytes / 4) : null);
    const blocks = K / layout.blockElements;
    const tile = M <= 4 ? N : Math.max(1, Math.floor(TILE_BYTES / (blocks * layout.blockBytes)));
    const parts = M * N * K < this.parallelThreshold ? 1 : Math.min(this.threads, N);
    const bound = (p: number) => Math.floor((N * p) / parts);
    const args = (p: number) => [base, xs, w.addr, out, N, blocks, bound(p), bound(p + 1), M, tile];
    for (let p = 1; p < parts; p++) this.workers!.start(p - 1, KERNEL_FORMATS.indexOf(format), args(p));
    let failed = false;
    try {
      kernels.run[format](...(args(0) as Parameters<RunKernel>));
    } finally {
      for (let p = 1; p < parts; p++) failed = !this.workers!.wait(p - 1) || failed;
    }
    if (failed) throw new AigridError('ERR_INVALID_ARGUMENT', 'ggml linear: a kernel trapped in a worker');
    return new Float32Array(kernels.memory.buffer, out, M * N).slice();
  }

  /** Scratch space for one call's input and output (reused; calls are synchronous). */
  private scratchOf(bytes: number): number {
    if (bytes <= this.scratchSize) return this.scratch;
    const heap = this.kernels!.heap;
    if (this.scratch) heap.release(this.scratch);
    this.scratchSize = 0;
    this.scratch = heap.alloc(Math.max(bytes, 64 * 1024));
    if (this.scratch) this.scratchSize = Math.max(bytes, 64 * 1024);
    return this.scratch;
  }
}
