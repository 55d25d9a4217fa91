// The CPU backend: kernels/cpu references run eagerly, except linear, which runs the fast kernels of
// cpu-linear.ts (WebAssembly SIMD where available), and attention and the activations, which compute
// the references' values in leaner loops. Weights hold the values the GPU would multiply
// by (f16-rounded or dequantized, kept as f32), so both backends compute the same function; a GGUF
// file's quantized weights stay in their blocks and run through ggml-linear.ts (its kernels decode
// the blocks exactly, on as many threads as the backend was made with).
import { AigridError, f32ToF16 } from '../../../protocol/index.ts';
import { dequantizeGgml, GGML_TYPE, sliceGgmlRows, type GgmlBlocks } from '../../../kernels/ggml-quants.ts';
import type { GgmlDType } from '../../../kernels/tensor.ts';
import { gegluRef, gelu, silu } from '../../../kernels/cpu/activation.ts';
import { addWeightedRef, routeRef } from '../../../kernels/cpu/moe.ts';
import { embeddingRef } from '../../../kernels/cpu/embedding.ts';
import { layerNormRef, rmsNormRef } from '../../../kernels/cpu/norm.ts';
import { ropeRef, type RopeScaling } from '../../../kernels/cpu/rope.ts';
import { addRef } from '../../../kernels/cpu/add.ts';
import { roundF16Array, storedWeights } from '../../../kernels/quant.ts';
import { attentionFast } from './cpu-attention.ts';
import { gatherRows, linearFast, placeWeight, releaseWeight, simdLinearAvailable, type LinearWeight } from './cpu-linear.ts';
import { GgmlCpuRuntime, type GgmlLinear } from './ggml-linear.ts';
import { rowSize } from './rows.ts';
import type { AttentionOptions, Backend, KvStore, KvStoreOptions, Ops, Table, Tensor, Weight, WeightDtype } from './types.ts';

export interface CpuTensor extends Tensor {
  readonly data: Float32Array | Uint32Array;
}

export interface CpuWeight extends Weight, LinearWeight {
  /** [N, K] values as stored (in the SIMD heap, in the kernels' layout, when `addr` is not 0). */
  readonly values: Float32Array;
}

/** A GGUF weight kept in its blocks (ggml-linear.ts), its rows split across the runtime's threads. */
interface CpuGgmlWeight extends Weight {
  readonly ggml: GgmlLinear;
}

const GGML_DTYPES: Record<number, GgmlDType> = { [GGML_TYPE.Q8_0]: 'q8_0', [GGML_TYPE.Q4_0]: 'q4_0', [GGML_TYPE.Q5_0]: 'q5_0', [GGML_TYPE.Q4_K]: 'q4_k', [GGML_TYPE.Q6_K]: 'q6_k' };

/** A table kept in its blocks: each looked-up row is decoded when asked for. */
interface BlockTable extends Table {
  readonly blocks: GgmlBlocks;
}

/** A table that reads a weight's storage (tied embeddings): rows come through gatherRows. */
interface WeightTable extends CpuTensor {
  readonly weight: CpuWeight;
}

/** Weights whose storage a table shares (tied embeddings): freed only when both are unreachable. */
const shared = new WeakSet<Weight>();
const released = new WeakSet<Weight>();

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function tensor(data: Float32Array | Uint32Array, shape: readonly number[]): CpuTensor {
  if (data.length !== size(shape)) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `${data.length} values for [${shape.join(', ')}]`);
  }
  return { shape: [...shape], data };
}

function f32(t: Tensor): Float32Array {
  const data = (t as CpuTensor).data;
  if (!(data instanceof Float32Array)) throw new AigridError('ERR_INVALID_ARGUMENT', 'cpu backend: expected an f32 tensor');
  return data;
}

function u32(t: Tensor): Uint32Array {
  const data = (t as CpuTensor).data;
  if (!(data instanceof Uint32Array)) throw new AigridError('ERR_INVALID_ARGUMENT', 'cpu backend: expected a u32 tensor');
  return data;
}

/**
 * K and V as [tokens, kvHeads, headDim]: the cached tokens are a prefix, as attentionRef reads them.
 * The arrays grow as tokens come (doubling, up to maxSeq): most sessions are far shorter than
 * maxSeq, and zeroing maxSeq rows for every layer of every new session cost more than its prefill.
 * The memory budget still counts maxSeq (Backend.kvBytes), so growth never overdraws it.
 * With dtype f16 they hold f16 bit patterns (rounded as the GPU cache rounds), half the memory.
 */
export class CpuKvStore implements KvStore {
  private kData: Float32Array | Uint16Array;
  private vData: Float32Array | Uint16Array;
  private cached = 0;

  constructor(readonly options: KvStoreOptions) {
    if (options.dtype !== undefined && options.dtype !== 'f32' && options.dtype !== 'f16') {
      throw new AigridError('ERR_DTYPE_UNSUPPORTED', `kv: dtype must be f32 or f16, got ${JSON.stringify(options.dtype)}`);
    }
    this.kData = this.empty(0);
    this.vData = this.empty(0);
  }

  /** The cached keys, [length, kvHeads, headDim]: f32 values, or f16 bits with dtype f16. */
  get k(): Float32Array | Uint16Array {
    return this.kData.subarray(0, this.cached * this.rowSize);
  }

  /** The cached values, [length, kvHeads, headDim], stored as `k`. */
  get v(): Float32Array | Uint16Array {
    return this.vData.subarray(0, this.cached * this.rowSize);
  }

  get length(): number {
    return this.cached;
  }

  get bytes(): number {
    return this.kData.byteLength + this.vData.byteLength;
  }

  private get rowSize(): number {
    return this.options.kvHeads * this.options.headDim;
  }

  private empty(length: number): Float32Array | Uint16Array {
    return this.options.dtype === 'f16' ? new Uint16Array(length) : new Float32Array(length);
  }

  append(k: Float32Array, v: Float32Array): void {
    const row = this.rowSize;
    const tokens = k.length / row;
    const length = this.cached + tokens;
    if (length > this.options.maxSeq) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `kv: appending ${tokens} tokens at length ${this.cached} exceeds ${this.options.maxSeq}`);
    }
    if (length * row > this.kData.length) {
      const capacity = Math.min(this.options.maxSeq, Math.max(length, 2 * (this.kData.length / row), 64)) * row;
      const grownK = this.empty(capacity);
      const grownV = this.empty(capacity);
      grownK.set(this.k);
      grownV.set(this.v);
      this.kData = grownK;
      this.vData = grownV;
    }
    put(this.kData, k, this.cached * row);
    put(this.vData, v, this.cached * row);
    this.cached = length;
  }

  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.cached) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `kv: cannot truncate ${this.cached} tokens to ${length}`);
    }
    this.cached = length;
  }

  destroy(): void {}
}

/** Writes `values` at `offset`: as they are, or rounded to f16 bits (ties to even) in a Uint16Array. */
function put(dst: Float32Array | Uint16Array, values: Float32Array, offset: number): void {
  if (dst instanceof Float32Array) {
    dst.set(values, offset);
    return;
  }
  for (let i = 0; i < values.length; i++) dst[offset + i] = f32ToF16(values[i]!);
}

/** Rows of a block table, decoded exactly; an id past the table gives a zero row, as embeddingRef does. */
function gatherBlockRows(m: GgmlBlocks, ids: Uint32Array): Float32Array {
  const out = new Float32Array(ids.length * m.cols);
  ids.forEach((id, t) => {
    if (id < m.rows) out.set(dequantizeGgml(m.type, sliceGgmlRows(m, id, 1).bytes, m.cols), t * m.cols);
  });
  return out;
}

class CpuOps implements Ops {
  input(data: Float32Array, shape: readonly number[]): Tensor {
    return tensor(data.slice(), shape);
  }

  indices(data: Uint32Array): Tensor {
    return tensor(data.slice(), [data.length]);
  }

  view(x: Tensor, shape: readonly number[]): Tensor {
    return tensor((x as CpuTensor).data, shape);
  }

  rows(x: Tensor, start: number, count: number): Tensor {
    const row = rowSize('rows', x, x, start, count);
    return tensor((x as CpuTensor).data.slice(start * row, (start + count) * row), [count, ...x.shape.slice(1)]);
  }

  setRows(dst: Tensor, src: Tensor, start: number): void {
    const row = rowSize('setRows', dst, src, start, src.shape[0]!);
    f32(dst).set(f32(src), start * row);
  }

  linear(x: Tensor, w: Weight, bias?: Tensor): Tensor {
    const [N, K] = w.shape;
    const xs = f32(x);
    if (x.shape[x.shape.length - 1] !== K) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `linear: x [${x.shape.join(', ')}] does not end in K = ${K}`);
    }
    if (released.has(w)) throw new AigridError('ERR_INVALID_ARGUMENT', 'linear: weight used after dispose()');
    const M = xs.length / K;
    const ggml = (w as Partial<CpuGgmlWeight>).ggml;
    let out = ggml ? ggml.forward(xs, M) : linearFast(xs, M, K, w as CpuWeight, N);
    if (bias) out = addRef(out, f32(bias));
    return tensor(out, [M, N]);
  }

  add(a: Tensor, b: Tensor): Tensor {
    const bs = f32(b);
    if (bs.length !== f32(a).length && bs.length !== a.shape[a.shape.length - 1]) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `add: [${b.shape.join(', ')}] does not fit [${a.shape.join(', ')}]`);
    }
    return tensor(addRef(f32(a), bs), a.shape);
  }

  rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
    return tensor(rmsNormRef(f32(x), f32(weight), eps), x.shape);
  }

  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number): Tensor {
    return tensor(layerNormRef(f32(x), f32(gamma), f32(beta), eps), x.shape);
  }

  rope(x: Tensor, positions: Tensor, theta: number, scaling?: RopeScaling): Tensor {
    const [, heads, headDim] = x.shape as [number, number, number];
    return tensor(ropeRef(f32(x), u32(positions), heads, headDim, theta, scaling), x.shape);
  }

  attention(q: Tensor, k: Tensor, v: Tensor, kv: KvStore, options: AttentionOptions = {}): Tensor {
    const store = kv as CpuKvStore;
    const [tokens, heads, headDim] = q.shape as [number, number, number];
    const { kvHeads } = store.options;
    store.append(f32(k), f32(v));
    const out = attentionFast(f32(q), store.k, store.v, {
      tokens, heads, kvHeads, headDim, startPos: store.length - tokens, ...options,
    });
    return tensor(out, q.shape);
  }

  route(logits: Tensor, k: number, normalize: boolean): Tensor {
    return tensor(routeRef(f32(logits), logits.shape[1]!, k, normalize), logits.shape);
  }

  addWeighted(acc: Tensor, y: Tensor, weights: Tensor, e: number): Tensor {
    return tensor(addWeightedRef(f32(acc), f32(y), f32(weights), weights.shape[1]!, e), acc.shape);
  }

  geglu(gate: Tensor, up: Tensor): Tensor {
    return tensor(gegluRef(f32(gate), f32(up)), gate.shape);
  }

  swiglu(gate: Tensor, up: Tensor): Tensor {
    // swigluRef's values, in a plain loop.
    const g = f32(gate);
    const u = f32(up);
    const out = new Float32Array(g.length);
    for (let i = 0; i < g.length; i++) out[i] = silu(g[i]!) * u[i]!;
    return tensor(out, gate.shape);
  }

  gelu(x: Tensor): Tensor {
    const xs = f32(x);
    const out = new Float32Array(xs.length);
    for (let i = 0; i < xs.length; i++) out[i] = gelu(xs[i]!);
    return tensor(out, x.shape);
  }

  embedding(ids: Tensor, table: Table): Tensor {
    const [rows, width] = table.shape as [number, number];
    const idList = u32(ids);
    const weight = (table as Partial<WeightTable>).weight;
    if (weight) return tensor(gatherRows(weight, rows, width, idList), [idList.length, width]);
    const blocks = (table as Partial<BlockTable>).blocks;
    if (blocks) return tensor(gatherBlockRows(blocks, idList), [idList.length, width]);
    return tensor(embeddingRef(idList, f32(table as CpuTensor), rows, width), [idList.length, width]);
  }

  free(): void {}
}

export interface CpuBackendOptions {
  /** Threads of the quantized (GGUF) linears; default: the cores available. */
  threads?: number;
  /** Multiply-adds below which a call stays on one thread (default 2^19). */
  parallelThreshold?: number;
}

/** One runtime per thread count for the whole process: its workers serve every backend made with it. */
const sharedRuntimes = new Map<number | undefined, Promise<GgmlCpuRuntime>>();

export class CpuBackend implements Backend {
  readonly kind = 'cpu' as const;
  readonly description = 'cpu';
  private ggml: GgmlCpuRuntime | undefined;

  /**
   * A backend whose quantized linears run on `runtime` (made at first use, single-threaded, when
   * absent); `ownsRuntime`: destroy() ends its workers.
   */
  constructor(runtime?: GgmlCpuRuntime, private ownsRuntime = false) {
    this.ggml = runtime;
  }

  /** A backend with its quantized linears' worker threads started (shared by the backends of a process). */
  static async create(options: CpuBackendOptions = {}): Promise<CpuBackend> {
    if (options.parallelThreshold !== undefined) return new CpuBackend(await GgmlCpuRuntime.create(options), true);
    let runtime = sharedRuntimes.get(options.threads);
    if (!runtime) {
      runtime = GgmlCpuRuntime.create({ threads: options.threads });
      sharedRuntimes.set(options.threads, runtime);
      runtime.catch(() => sharedRuntimes.delete(options.threads));
    }
    return new CpuBackend(await runtime);
  }

  /**
   * Whether linears run the WebAssembly SIMD kernels; false: the blocked-JS fallback (no WebAssembly
   * SIMD or no shared memory, as in a page that is not cross-origin isolated).
   */
  get simd(): boolean {
    return simdLinearAvailable() && (this.ggml?.simd ?? true);
  }

  /** Threads a quantized linear may use, the calling one included (1 on a page's main thread). */
  get threads(): number {
    return this.ggml?.threads ?? 1;
  }

  weight(data: Float32Array, shape: readonly [number, number], dtype: WeightDtype, _label: string): Weight {
    const placed = placeWeight(storedWeights(data, shape[0], shape[1], dtype), shape[0], shape[1]);
    const weight: CpuWeight = { shape: [shape[0], shape[1]], dtype, values: placed.values, addr: placed.addr };
    return weight;
  }

  quantizedWeight(m: GgmlBlocks, _label: string): Weight {
    if (!this.ggml) {
      this.ggml = GgmlCpuRuntime.single();
      this.ownsRuntime = true;
    }
    const weight: CpuGgmlWeight = { shape: [m.rows, m.cols], dtype: GGML_DTYPES[m.type]!, ggml: this.ggml.place(m) };
    return weight;
  }

  constant(data: Float32Array, shape: readonly number[], _label: string): Tensor {
    return tensor(data, shape);
  }

  table(data: Float32Array, shape: readonly [number, number], dtype: 'f32' | 'f16', _label: string): Table {
    return tensor(dtype === 'f16' ? roundF16Array(data) : data, shape);
  }

  quantizedTable(m: GgmlBlocks, _dtype: 'f32' | 'f16', _label: string): Table {
    const table: BlockTable = { shape: [m.rows, m.cols], blocks: m };
    return table;
  }

  tableOf(weight: Weight): Table | null {
    // Like the GPU: f32 and f16 weights are readable as tables, quantized ones are not.
    if (weight.dtype !== 'f32' && weight.dtype !== 'f16') return null;
    shared.add(weight);
    const table: WeightTable = { ...tensor((weight as CpuWeight).values, weight.shape), weight: weight as CpuWeight };
    return table;
  }

  kvBytes(options: KvStoreOptions): number {
    return 2 * options.maxSeq * options.kvHeads * options.headDim * (options.dtype === 'f16' ? 2 : 4);
  }

  kvStore(options: KvStoreOptions): KvStore {
    return new CpuKvStore(options);
  }

  settle(): Promise<void> {
    return Promise.resolve();
  }

  run(record: (ops: Ops) => Tensor): Promise<Float32Array> {
    const out = record(new CpuOps());
    return Promise.resolve(Float32Array.from(f32(out)));
  }

  dispose(item: Weight | Tensor | Table): void {
    const ggml = (item as Partial<CpuGgmlWeight>).ggml;
    if (ggml) {
      ggml.destroy();
      return;
    }
    const w = item as Partial<CpuWeight>;
    if (w.addr === undefined || released.has(item as Weight)) return;
    released.add(item as Weight);
    // A weight a table shares is freed by the garbage collector once neither is reachable.
    if (!shared.has(item as Weight)) releaseWeight(w as CpuWeight);
  }

  destroy(): void {
    if (this.ownsRuntime) this.ggml?.destroy();
  }
}
