// The CPU backend's linear: x [M, K] · wᵀ with w [N, K] (out x in). kernels/cpu/matmul.ts keeps the
// plain reference (linearRef); this is the fast path peers without WebGPU serve with.
//
// Two implementations:
// - SIMD: WebAssembly f32x4 kernels (wasm-linear.ts) over weights kept in one shared WebAssembly
//   memory (the "SIMD heap"), in pairs of rows interleaved by groups of four values (the last row
//   alone when N is odd), so that a kernel reads two weight rows as one sequential stream. Blocks
//   of up to 4 rows of x (interleaved the same way) go through the weight pairs together, and for
//   more than 4 rows the weights are walked in tiles that stay in cache while every block reads
//   them, so a batch of M rows reads each weight from memory once. Sums are f32 (as on the GPU),
//   four lanes added at the end, the same for a row alone or in a batch; results differ from
//   linearRef by rounding only.
// - Blocked JS, where WebAssembly SIMD or shared memory is missing, or K is not a multiple of 4:
//   4 rows x 2 weight rows (or 1 x 4) per pass over K, each sum in f64 in linearRef's order, so the
//   result is bit-identical to linearRef.
import { AigridError } from '../../../protocol/index.ts';
import { KERNELS, kernelName, linearModuleBytes } from './wasm-linear.ts';
import { WasmHeap } from './wasm-heap.ts';

/** Bytes of weight rows one tile holds: every row block reads a tile while it is in cache. */
const TILE_BYTES = 128 * 1024;

type Kernel = (x: number, w: number, out: number, N: number, K: number, blocks: number) => void;

/** The shared memory's allocator with the f32 kernels and the scratch of one call. */
class SimdHeap extends WasmHeap {
  private readonly kernels = new Map<string, Kernel>();
  private scratch = 0;
  private scratchSize = 0;

  constructor(memory: WebAssembly.Memory, instance: WebAssembly.Instance, maxPages: number) {
    super(memory, maxPages);
    for (const [mb, nb] of KERNELS) this.kernels.set(kernelName(mb, nb), instance.exports[kernelName(mb, nb)] as Kernel);
  }

  kernel(mb: number, nb: number): Kernel {
    return this.kernels.get(kernelName(mb, nb))!;
  }

  /** Scratch space for one call's x and output (reused across calls; everything here is synchronous). */
  scratchOf(bytes: number): number {
    if (bytes <= this.scratchSize) return this.scratch;
    if (this.scratch) this.release(this.scratch);
    this.scratchSize = 0;
    this.scratch = this.alloc(Math.max(bytes, 64 * 1024));
    if (this.scratch) this.scratchSize = this.sizeOf(this.scratch)!;
    return this.scratch;
  }
}

function createHeap(): SimdHeap | null {
  if (typeof WebAssembly === 'undefined' || typeof WebAssembly.Memory !== 'function') return null;
  // 4 GiB is wasm32's limit; a runtime that cannot reserve it gets 1 GiB.
  for (const maxPages of [65536, 16384]) {
    try {
      const memory = new WebAssembly.Memory({ initial: 16, maximum: maxPages, shared: true });
      const module = new WebAssembly.Module(linearModuleBytes(maxPages));
      return new SimdHeap(memory, new WebAssembly.Instance(module, { env: { memory } }), maxPages);
    } catch {
      // No SIMD, no shared memory (a page without cross-origin isolation), or no room: try less, then JS.
    }
  }
  return null;
}

let heap: SimdHeap | null | undefined;

function simdHeap(): SimdHeap | null {
  if (heap === undefined) heap = createHeap();
  return heap;
}

/** Whether this runtime has the SIMD kernels (WebAssembly SIMD and shared memory). */
export function simdLinearAvailable(): boolean {
  return simdHeap() !== null;
}

const finalizer = typeof FinalizationRegistry === 'function' ? new FinalizationRegistry<number>((addr) => heap?.release(addr)) : null;

/** A weight's values where the fast linear reads them. */
export interface LinearWeight {
  /**
   * [N, K] values: row-major in a plain array (`addr` 0), else a view into the SIMD heap in the
   * kernels' layout (rows in interleaved pairs); gatherRows reads rows of either.
   */
  readonly values: Float32Array;
  /** Byte address in the SIMD heap, or 0 for a plain array. */
  readonly addr: number;
}

/**
 * Places a weight's values [N, K] for `linearFast`: copied into the SIMD heap in the kernels' layout
 * when there is one (the view is freed when it is garbage-collected, or earlier by
 * `releaseWeight`), else kept as given.
 */
export function placeWeight(values: Float32Array, N: number, K: number, options: { simd?: boolean } = {}): LinearWeight {
  if (values.length !== N * K) throw new AigridError('ERR_SHAPE_MISMATCH', `placeWeight: ${values.length} values for [${N}, ${K}]`);
  const h = options.simd === false ? null : simdHeap();
  if (!h || K % 4 !== 0 || values.length === 0) return { values, addr: 0 };
  const addr = h.alloc(values.byteLength);
  if (!addr) return { values, addr: 0 }; // heap full: this weight stays in JS
  const view = new Float32Array(h.memory.buffer, addr, values.length);
  const paired = N - (N % 2);
  for (let r = 0; r < paired; r += 2) interleaveRows(values, r, 2, K, view, r * K);
  if (paired < N) view.set(values.subarray(paired * K), paired * K);
  finalizer?.register(view, addr, view);
  return { values: view, addr };
}

/** Frees a placed weight at once; its `values` must not be read afterwards. */
export function releaseWeight(w: LinearWeight): void {
  if (!w.addr || !heap) return;
  finalizer?.unregister(w.values);
  heap.release(w.addr);
}

/** Rows `ids` of a placed weight [N, K], as [ids.length, K]; an id from N on gives a zero row (as embeddingRef). */
export function gatherRows(w: LinearWeight, N: number, K: number, ids: Uint32Array): Float32Array {
  const out = new Float32Array(ids.length * K);
  const paired = w.addr ? N - (N % 2) : 0;
  ids.forEach((id, t) => {
    if (id >= N) return;
    if (id >= paired) {
      out.set(w.values.subarray(id * K, (id + 1) * K), t * K);
      return;
    }
    const base = (id - (id % 2)) * K + (id % 2) * 4;
    for (let k = 0; k < K; k += 4) out.set(w.values.subarray(base + 2 * k, base + 2 * k + 4), t * K + k);
  });
  return out;
}

/** Rows [m, m + mb) of src [·, K] into dst at float index `at`, interleaved by groups of four (x blocks, weight pairs). */
function interleaveRows(x: Float32Array, m: number, mb: number, K: number, dst: Float32Array, at: number): void {
  for (let i = 0; i < mb; i++) {
    const src = (m + i) * K;
    for (let k = 0, d = at + 4 * i; k < K; k += 4, d += 4 * mb) {
      dst[d] = x[src + k]!; dst[d + 1] = x[src + k + 1]!; dst[d + 2] = x[src + k + 2]!; dst[d + 3] = x[src + k + 3]!;
    }
  }
}

/** out [M, N] = x [M, K] · wᵀ, w placed by placeWeight. */
export function linearFast(x: Float32Array, M: number, K: number, w: LinearWeight, N: number): Float32Array {
  if (x.length !== M * K) throw new AigridError('ERR_SHAPE_MISMATCH', `linear: x has ${x.length} values, expected [${M}, ${K}]`);
  if (w.values.length !== N * K) throw new AigridError('ERR_SHAPE_MISMATCH', `linear: w has ${w.values.length} values, expected [${N}, ${K}]`);
  const h = w.addr ? heap : null;
  if (!h || M === 0 || N === 0) return linearBlocked(x, M, K, w.values, N);
  const scratch = h.scratchOf((M * K + M * N) * 4);
  if (!scratch) return linearBlocked(x, M, K, w.values, N);
  const xAddr = scratch;
  const outAddr = scratch + M * K * 4;
  const buffer = h.memory.buffer;
  const xs = new Float32Array(buffer, xAddr, M * K);
  for (let m = 0; m < M; m += 4) interleaveRows(x, m, Math.min(4, M - m), K, xs, m * K);
  const rowBytes = K * 4;
  const paired = N - (N % 2);
  // One row block reads the weights once anyway; several share each tile while it is in cache.
  const tileRows = M <= 4 ? paired : Math.max(2, Math.floor(TILE_BYTES / rowBytes / 2) * 2);
  for (let n0 = 0; n0 < paired; n0 += tileRows) {
    const pairs = Math.min(tileRows, paired - n0) / 2;
    for (let m = 0; m < M; m += 4) {
      h.kernel(Math.min(4, M - m), 2)(xAddr + m * rowBytes, w.addr + n0 * rowBytes, outAddr + (m * N + n0) * 4, N, K, pairs);
    }
  }
  if (paired < N) {
    for (let m = 0; m < M; m += 4) {
      h.kernel(Math.min(4, M - m), 1)(xAddr + m * rowBytes, w.addr + paired * rowBytes, outAddr + (m * N + paired) * 4, N, K, 1);
    }
  }
  return new Float32Array(buffer, outAddr, M * N).slice();
}

/** linearRef's result (bit for bit), computed 4 rows x 2 weight rows (or 1 x 4) at a time. */
export function linearBlocked(x: Float32Array, M: number, K: number, w: Float32Array, N: number): Float32Array {
  if (x.length !== M * K) throw new AigridError('ERR_SHAPE_MISMATCH', `linear: x has ${x.length} values, expected [${M}, ${K}]`);
  if (w.length !== N * K) throw new AigridError('ERR_SHAPE_MISMATCH', `linear: w has ${w.length} values, expected [${N}, ${K}]`);
  const out = new Float32Array(M * N);
  let m = 0;
  for (; m + 4 <= M; m += 4) {
    const a0 = m * K, a1 = a0 + K, a2 = a1 + K, a3 = a2 + K;
    const o0 = m * N, o1 = o0 + N, o2 = o1 + N, o3 = o2 + N;
    let n = 0;
    for (; n + 2 <= N; n += 2) {
      const b0 = n * K, b1 = b0 + K;
      let s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
      for (let k = 0; k < K; k++) {
        const w0 = w[b0 + k]!, w1 = w[b1 + k]!;
        const x0 = x[a0 + k]!, x1 = x[a1 + k]!, x2 = x[a2 + k]!, x3 = x[a3 + k]!;
        s00 += x0 * w0; s01 += x0 * w1;
        s10 += x1 * w0; s11 += x1 * w1;
        s20 += x2 * w0; s21 += x2 * w1;
        s30 += x3 * w0; s31 += x3 * w1;
      }
      out[o0 + n] = s00; out[o0 + n + 1] = s01;
      out[o1 + n] = s10; out[o1 + n + 1] = s11;
      out[o2 + n] = s20; out[o2 + n + 1] = s21;
      out[o3 + n] = s30; out[o3 + n + 1] = s31;
    }
    for (; n < N; n++) {
      const b0 = n * K;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < K; k++) {
        const w0 = w[b0 + k]!;
        s0 += x[a0 + k]! * w0; s1 += x[a1 + k]! * w0; s2 += x[a2 + k]! * w0; s3 += x[a3 + k]! * w0;
      }
      out[o0 + n] = s0; out[o1 + n] = s1; out[o2 + n] = s2; out[o3 + n] = s3;
    }
  }
  for (; m < M; m++) {
    const a0 = m * K, o0 = m * N;
    let n = 0;
    for (; n + 4 <= N; n += 4) {
      const b0 = n * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < K; k++) {
        const xv = x[a0 + k]!;
        s0 += xv * w[b0 + k]!; s1 += xv * w[b1 + k]!; s2 += xv * w[b2 + k]!; s3 += xv * w[b3 + k]!;
      }
      out[o0 + n] = s0; out[o0 + n + 1] = s1; out[o0 + n + 2] = s2; out[o0 + n + 3] = s3;
    }
    for (; n < N; n++) {
      const b0 = n * K;
      let s = 0;
      for (let k = 0; k < K; k++) s += x[a0 + k]! * w[b0 + k]!;
      out[o0 + n] = s;
    }
  }
  return out;
}
