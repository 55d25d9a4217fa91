// Fused steps of a decoder layer, for backends that offer them (WebGPU: a decode step's layer in a
// handful of dispatches instead of sixteen). A layer asks at load whether its backend takes fused
// weights (q, k, v stacked into one [q; k; v] matrix, gate and up into [gate; up]) and at each pass
// for the fused ops; backends without them (the CPU) keep the separate weights and steps, which
// compute the same function.
import { AigridError } from '../../../protocol/index.ts';
import type { RopeScaling } from '../../../kernels/cpu/rope.ts';
import type { GgmlBlocks } from '../../../kernels/ggml-quants.ts';
import type { AttentionOptions, Backend, KvStore, Ops, Tensor, Weight } from '../backend/types.ts';
import type { LoadedValue } from '../load-weights.ts';

export interface QkvShape {
  heads: number;
  kvHeads: number;
  headDim: number;
}

/** RMSNorm weights [headDim] over each head of q and of k before rope (Qwen3, Gemma 3). */
export interface HeadNorms {
  q: Tensor;
  k: Tensor;
  eps: number;
}

export interface FusedOps {
  /**
   * rmsNorm(x, norm, eps) · wᵀ (+ bias): the norm applied as the product reads x where it can.
   * Several weights give their outputs side by side ([T, sum of N]; the bias spans them all).
   */
  normLinear(x: Tensor, norm: Tensor, eps: number, w: Weight | readonly Weight[], bias?: Tensor): Tensor;
  /** residual + x · wᵀ: the residual added as the product is written. */
  linearResidual(x: Tensor, w: Weight, residual: Tensor): Tensor;
  /** residual + rmsNorm(x, norm, eps) in one pass (Gemma 2's norms after attention and the MLP). */
  normAdd(x: Tensor, norm: Tensor, eps: number, residual: Tensor): Tensor;
  /**
   * act(h · gateᵀ) * (h · upᵀ) for w = [gate; up] [2I, K] and h = rmsNorm(x, norm, eps), or x when
   * norm is absent: [T, I], act silu (swiglu) or gelu's tanh form (geglu).
   */
  gatedLinear(x: Tensor, norm: Tensor | undefined, eps: number, w: Weight, kind: 'swiglu' | 'geglu'): Tensor;
  /**
   * qkv [T, (heads + 2 kvHeads) * headDim] from a fused projection: rope of q and k, the append of
   * k and v to the cache, then attention of the rotated q over it -> [T, heads, headDim]. kv is
   * one session's store, or a decode batch's stores (row b is one token of session b's). With
   * norms, each head of q and k is RMS-normed before rope.
   */
  qkvAttention(qkv: Tensor, positions: Tensor, kv: KvStore | readonly KvStore[], shape: QkvShape, theta: number, scaling: RopeScaling | undefined, options: AttentionOptions, norms?: HeadNorms): Tensor;
}

/** The fused ops of this pass, if its backend has them. */
export function fusedOps(ops: Ops): (Ops & FusedOps) | undefined {
  return 'qkvAttention' in ops ? (ops as Ops & FusedOps) : undefined;
}

/** Whether layers on this backend stack their projections at load (it runs the fused ops). */
export function fusesWeights(backend: Backend): boolean {
  return (backend as { fusesWeights?: boolean }).fusesWeights === true;
}

/**
 * The rows of several matrices [n_i, K] stacked into one (rows are independent in every storage
 * format, so each row is stored as it would be alone), or undefined when they are of different
 * formats (a GGUF file may keep v in Q6_K beside q and k in Q4_K).
 */
export function stackRows(parts: readonly LoadedValue[], K: number): LoadedValue | undefined {
  if (parts.every((p) => p instanceof Float32Array)) {
    const floats = parts as readonly Float32Array[];
    const out = new Float32Array(floats.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of floats) {
      if (p.length % K !== 0) throw new AigridError('ERR_SHAPE_MISMATCH', `stacking rows of ${K}: a matrix of ${p.length} values`);
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  const blocks = parts.filter((p): p is GgmlBlocks => !(p instanceof Float32Array));
  if (blocks.length !== parts.length || blocks.some((b) => b.type !== blocks[0]!.type || b.cols !== K)) return undefined;
  const bytes = new Uint8Array(blocks.reduce((n, b) => n + b.bytes.length, 0));
  let at = 0;
  for (const b of blocks) {
    bytes.set(b.bytes, at);
    at += b.bytes.length;
  }
  return { type: blocks[0]!.type, rows: blocks.reduce((n, b) => n + b.rows, 0), cols: K, bytes };
}

/** Several vectors end to end (biases of stacked projections). */
export function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** r + x · wᵀ: fused where the pass offers it, else the product and the add. */
export function plusLinear(ops: Ops, f: FusedOps | undefined, r: Tensor, x: Tensor, w: Weight): Tensor {
  if (f) return f.linearResidual(x, w, r);
  const y = ops.linear(x, w);
  const out = ops.add(r, y);
  ops.free(y);
  return out;
}

/** r + rmsNorm(x): fused where the pass offers it, else the norm and the add. */
export function plusNorm(ops: Ops, f: FusedOps | undefined, r: Tensor, x: Tensor, norm: Tensor, eps: number): Tensor {
  if (f) return f.normAdd(x, norm, eps, r);
  const n = ops.rmsNorm(x, norm, eps);
  const out = ops.add(r, n);
  ops.free(n);
  return out;
}
