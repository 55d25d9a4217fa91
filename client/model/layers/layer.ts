// A transformer layer: its weights on a backend and forward() over one pass, written once against
// the Backend/Ops interface. Each architecture module says which tensors it needs and their shapes.
import { AigridError } from '../../../protocol/index.ts';
import { Q4_BLOCK } from '../../../kernels/quant.ts';
import type { AttentionOptions, Backend, KvStore, Ops, Tensor, Weight, WeightDtype } from '../backend/types.ts';
import type { ModelConfig } from '../config.ts';
import type { ExpectedShapes, LoadedValue } from '../load-weights.ts';

/**
 * The caches a pass continues: one store for all T rows (one session), or one store per row (a
 * decode batch: row b is one token of its own session).
 */
export type PassKv = KvStore | readonly KvStore[];

export interface Layer {
  /** x: [T, H] -> [T, H]; appends the T tokens' keys and values to kv. Does not free x. */
  forward(ops: Ops, x: Tensor, positions: Tensor, kv: PassKv): Tensor;
  dispose(backend: Backend): void;
}

export interface LayerArch {
  /** Checkpoint tensors of layer `index` with the shapes the config implies. */
  shapes(config: ModelConfig, index: number): ExpectedShapes;
  /** Uploads the layer's weights (values as read, in checkpoint layout). */
  create(backend: Backend, config: ModelConfig, index: number, tensors: Map<string, LoadedValue>, dtype: WeightDtype): Layer;
}

/**
 * Attention of q [T, heads, hd] with k, v [T, kvHeads, hd] over kv. A batch runs it per row on
 * copies of that row, since each session's cache holds only its own keys; every other op of the
 * layer runs on all rows at once, so each weight is read once per batch.
 */
export function attend(ops: Ops, q: Tensor, k: Tensor, v: Tensor, kv: PassKv, options: AttentionOptions = {}): Tensor {
  if (!Array.isArray(kv)) return ops.attention(q, k, v, kv as KvStore, options);
  const stores = kv as readonly KvStore[];
  if (stores.length !== q.shape[0]) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `attention: ${stores.length} KV stores for ${q.shape[0]} rows`);
  }
  if (stores.length === 1) return ops.attention(q, k, v, stores[0]!, options);
  // A copy of q gives the output its shape; each row is overwritten with that session's result.
  const out = ops.rows(q, 0, stores.length);
  stores.forEach((store, b) => {
    const qb = ops.rows(q, b, 1);
    const kb = ops.rows(k, b, 1);
    const vb = ops.rows(v, b, 1);
    const ab = ops.attention(qb, kb, vb, store, options);
    ops.setRows(out, ab, b);
    ops.free(qb, kb, vb, ab);
  });
  return out;
}

/** q4 packs blocks of 32 along K; a weight whose K is not a multiple falls back to q8. */
export function weightDtypeFor(dtype: WeightDtype, K: number): WeightDtype {
  return dtype === 'q4' && K % Q4_BLOCK !== 0 ? 'q8' : dtype;
}

/**
 * Uploads a linear weight [N, K] in the requested dtype (or the closest one its shape allows); a
 * quantized one keeps its own blocks.
 */
export function linearWeight(backend: Backend, data: LoadedValue, N: number, K: number, dtype: WeightDtype, label: string): Weight {
  if (data instanceof Float32Array) return backend.weight(data, [N, K], weightDtypeFor(dtype, K), label);
  if (data.rows !== N || data.cols !== K) throw new AigridError('ERR_SHAPE_MISMATCH', `${label}: [${data.rows}, ${data.cols}] blocks where [${N}, ${K}] is expected`);
  return backend.quantizedWeight(data, label);
}

/** What a layer uploaded, so that a failed load or dispose() frees all of it. */
export class Uploads {
  private readonly items: (Weight | Tensor)[] = [];

  add<T extends Weight | Tensor>(item: T): T {
    this.items.push(item);
    return item;
  }

  dispose(backend: Backend): void {
    for (const item of this.items.splice(0)) backend.dispose(item);
  }
}

/** Builds a layer; if an upload fails, whatever was uploaded before it is freed. */
export function withUploads<T>(backend: Backend, build: (uploads: Uploads) => T): T {
  const uploads = new Uploads();
  try {
    return build(uploads);
  } catch (err) {
    uploads.dispose(backend);
    throw err;
  }
}
