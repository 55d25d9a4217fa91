// A transformer layer: its weights on a backend and forward() over one pass, written once against
// the Backend/Ops interface. Each architecture module says which tensors it needs and their shapes.
import { Q4_BLOCK } from '../../../kernels/quant.ts';
import type { Backend, KvStore, Ops, Tensor, Weight, WeightDtype } from '../backend/types.ts';
import type { ModelConfig } from '../config.ts';
import type { ExpectedShapes } from '../load-weights.ts';

export interface Layer {
  /** x: [T, H] -> [T, H]; appends the T tokens' keys and values to kv. Does not free x. */
  forward(ops: Ops, x: Tensor, positions: Tensor, kv: KvStore): Tensor;
  dispose(backend: Backend): void;
}

export interface LayerArch {
  /** Checkpoint tensors of layer `index` with the shapes the config implies. */
  shapes(config: ModelConfig, index: number): ExpectedShapes;
  /** Uploads the layer's weights (values as read, in checkpoint layout). */
  create(backend: Backend, config: ModelConfig, index: number, tensors: Map<string, Float32Array>, dtype: WeightDtype): Layer;
}

/** q4 packs blocks of 32 along K; a weight whose K is not a multiple falls back to q8. */
export function weightDtypeFor(dtype: WeightDtype, K: number): WeightDtype {
  return dtype === 'q4' && K % Q4_BLOCK !== 0 ? 'q8' : dtype;
}

/** Uploads a linear weight [N, K] in the requested dtype (or the closest one its shape allows). */
export function linearWeight(backend: Backend, data: Float32Array, N: number, K: number, dtype: WeightDtype, label: string): Weight {
  return backend.weight(data, [N, K], weightDtypeFor(dtype, K), label);
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
