// What a layer needs from a compute backend, so that each architecture's layer is written once and
// runs on WebGPU (recorded into one command encoder) or on the CPU (eager, kernels/cpu references).
import type { FloatWeightDtype as WeightDtype } from '../../../kernels/weights.ts';
import type { GgmlDType } from '../../../kernels/tensor.ts';
import type { RopeScaling } from '../../../kernels/cpu/rope.ts';
import type { GgmlBlocks } from '../../../kernels/ggml-quants.ts';

/** How a served model's weights are stored (a user's choice); GGUF blocks keep their own format. */
export type { WeightDtype };

export type BackendKind = 'webgpu' | 'cpu';

/** An activation or constant: storage owned by the backend, with its shape beside it. */
export interface Tensor {
  readonly shape: readonly number[];
}

/** A linear weight [N, K] (out x in), stored in `dtype` (or a GGUF file's block format). */
export interface Weight {
  readonly shape: readonly [number, number];
  readonly dtype: WeightDtype | GgmlDType;
}

/** A lookup table [rows, width] (token or position embeddings). */
export interface Table {
  readonly shape: readonly number[];
}

/** The keys and values of one session in one layer. */
export interface KvStore {
  /** Tokens cached (positions 0 .. length - 1). */
  readonly length: number;
  readonly bytes: number;
  /** Forgets every token from `length` on. */
  truncate(length: number): void;
  destroy(): void;
}

export interface KvStoreOptions {
  kvHeads: number;
  headDim: number;
  /** The most tokens the store holds. */
  maxSeq: number;
  /**
   * How keys and values are kept (default f32). f16 halves the memory: they are rounded to the
   * nearest f16 on append, and attention computes what it would on an f32 store of those values.
   */
  dtype?: 'f32' | 'f16';
  label?: string;
}

/**
 * The operations of one forward pass. On WebGPU they are recorded in order into one encoder and run
 * when the pass is submitted; on the CPU they run at once. Every op returns a new tensor except
 * `view` (same storage, new shape) and `rope` (which may rotate its input in place).
 */
/** Attention's knobs: q·k scale (default 1 / sqrt(headDim)), a sliding window and a score soft-cap (none by default). */
export interface AttentionOptions {
  scale?: number;
  window?: number;
  softcap?: number;
}

export interface Ops {
  /** f32 data of the given shape, copied in. */
  input(data: Float32Array, shape: readonly number[]): Tensor;
  /** u32 [n] indices (token ids, positions), copied in. */
  indices(data: Uint32Array): Tensor;
  /** The same storage under another shape of the same size. */
  view(x: Tensor, shape: readonly number[]): Tensor;
  /** A copy of rows [start, start + count) along x's first dimension. */
  rows(x: Tensor, start: number, count: number): Tensor;
  /** Overwrites dst's rows from `start` on with src's rows (same trailing shape). */
  setRows(dst: Tensor, src: Tensor, start: number): void;
  /** x [M, K] · wᵀ (+ bias [N]) -> [M, N]. */
  linear(x: Tensor, w: Weight, bias?: Tensor): Tensor;
  /** a + b, where b has a's shape or is one row broadcast over a's rows. */
  add(a: Tensor, b: Tensor): Tensor;
  rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor;
  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number): Tensor;
  /** Rotate-half rotary embedding of x [T, heads, headDim] by each token's position (scaling: config rope_scaling). */
  rope(x: Tensor, positions: Tensor, theta: number, scaling?: RopeScaling): Tensor;
  /**
   * Appends k, v [T, kvHeads, headDim] to the store, then causal attention of q [T, heads, headDim]
   * over every cached token -> [T, heads, headDim]. scale defaults to 1 / sqrt(headDim).
   */
  attention(q: Tensor, k: Tensor, v: Tensor, kv: KvStore, options?: AttentionOptions): Tensor;
  /** silu(gate) * up, both [T, I]. */
  swiglu(gate: Tensor, up: Tensor): Tensor;
  /** gelu(gate) * up (tanh form), both [T, I]: Gemma's MLP. */
  geglu(gate: Tensor, up: Tensor): Tensor;
  /** Mixture of experts: routing weights [T, E] of router logits (softmax, top k kept, renormalized when asked). */
  route(logits: Tensor, k: number, normalize: boolean): Tensor;
  /** acc + weights[:, e] * y, acc and y [T, H]: adds one expert's output at its routing weight. */
  addWeighted(acc: Tensor, y: Tensor, weights: Tensor, e: number): Tensor;
  /** GELU, tanh form. */
  gelu(x: Tensor): Tensor;
  /** Rows of the table at ids (u32 [T]) -> [T, width]. */
  embedding(ids: Tensor, table: Table): Tensor;
  /** The pass no longer reads these; their storage may serve later ops of the same pass. */
  free(...tensors: Tensor[]): void;
}

export interface Backend {
  readonly kind: BackendKind;
  /** A label for logs: the adapter or 'cpu'. */
  readonly description: string;
  /** A linear weight [N, K] from f32 values, stored (and on the CPU, rounded) as `dtype`. */
  weight(data: Float32Array, shape: readonly [number, number], dtype: WeightDtype, label: string): Weight;
  /** A linear weight kept in a GGUF file's quantized blocks, dequantized by the kernels that read it. */
  quantizedWeight(m: GgmlBlocks, label: string): Weight;
  /** An f32 constant kept as is (norm weights, biases). */
  constant(data: Float32Array, shape: readonly number[], label: string): Tensor;
  /** A lookup table [rows, width] stored as f32 or f16. */
  table(data: Float32Array, shape: readonly [number, number], dtype: 'f32' | 'f16', label: string): Table;
  /**
   * A lookup table kept in a GGUF file's blocks where the backend reads rows from them (the CPU:
   * a 128k-token table in Q4_K is a quarter of its f16 size), else decoded to `dtype`.
   */
  quantizedTable(m: GgmlBlocks, dtype: 'f32' | 'f16', label: string): Table;
  /** The weight's own storage as a lookup table (tied embeddings), or null when its format cannot serve. */
  tableOf(weight: Weight): Table | null;
  /** Bytes a KV store of these dimensions holds (for budgeting before allocating). */
  kvBytes(options: KvStoreOptions): number;
  /** A KV store; on WebGPU create it inside `run`, whose pass then reports its allocation errors. */
  kvStore(options: KvStoreOptions): KvStore;
  /** Resolves once every upload so far has succeeded; rejects with the first error (e.g. out of memory). */
  settle(): Promise<void>;
  /**
   * Records a forward pass (synchronously: a recording error is thrown before this returns),
   * submits it and resolves with the values of the tensor `record` returns.
   */
  run(record: (ops: Ops) => Tensor): Promise<Float32Array>;
  /** Frees a weight, constant or table. */
  dispose(item: Weight | Tensor | Table): void;
  destroy(): void;
}
