// What a network needs to place a model, worked out from its config: the layer count and width,
// and the bytes one layer takes on a peer (weights in the served dtype plus a KV share), so the
// coordinator can fit layers to memory budgets.
import type { ModelConfig } from '../model/config.ts';
import { layerArch } from '../model/layers/index.ts';
import { readConfig } from '../model/shard.ts';
import type { TensorSource } from '../model/load-weights.ts';
import { AigridError, ModelIdSchema, ModelSpecSchema, type ModelSpec } from '../../protocol/index.ts';

/** Bytes per weight as each dtype stores it (q8: per-row f32 scales; q4: one f16 scale per 32). */
const BYTES_PER_WEIGHT: Record<ModelSpec['weightDtype'], number> = { f32: 4, f16: 2, q8: 1.01, q4: 0.5625 };
/** Each layer keeps room for this many cached tokens (f32 keys and values) beside its weights. */
const KV_TOKENS_PER_LAYER = 2048;

export interface ModelSpecOptions {
  modelId?: string;
  source: string;
  baseUrl?: string;
  revision?: string;
  weightDtype?: ModelSpec['weightDtype'];
  replication?: number;
  light?: boolean;
  notice?: string;
}

/**
 * Weights in the largest transformer layer, counted from the tensors the layer reads (so fused
 * projections, extra norms and a sparse layer's experts all count).
 */
export function weightsPerLayer(c: ModelConfig): number {
  return layerWeightBytes(c, () => 1);
}

/** Bytes of a tensor kept as its file stores it (a GGUF file's quantized blocks); undefined otherwise. */
export type StoredBytes = (name: string) => number | undefined;

/**
 * Bytes of the largest layer's weights: each tensor at `perWeight` bytes a value, or at the bytes
 * its file stores it in when it stays quantized.
 */
function layerWeightBytes(c: ModelConfig, perWeight: (name: string) => number, stored?: StoredBytes): number {
  const arch = layerArch(c);
  let most = 0;
  for (let l = 0; l < c.numLayers; l++) {
    let n = 0;
    for (const [name, shape] of arch.shapes(c, l)) n += stored?.(name) ?? shape.reduce((a, b) => a * b, 1) * perWeight(name);
    most = Math.max(most, n);
  }
  return most;
}

/**
 * Bytes of the Head as a peer loads it: token table, LM head (one matrix when tied), norms, GPT-2
 * positions. A quantized LM head keeps its blocks; the table beside it is f16 (kernels read
 * tables by row, so a quantized table is decoded at load).
 */
export function headBytesOf(c: ModelConfig, dtype: ModelSpec['weightDtype'], stored?: StoredBytes): number {
  const table = c.vocabSize * c.hiddenSize * (dtype === 'f32' ? 4 : 2);
  const headName = c.family === 'gpt2' ? 'wte.weight' : c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const quantizedHead = stored?.(headName);
  const lmHead = quantizedHead ?? c.vocabSize * c.hiddenSize * BYTES_PER_WEIGHT[dtype];
  const tied = c.family === 'gpt2' || c.tieWordEmbeddings;
  const positions = c.family === 'gpt2' ? c.maxPositions * c.hiddenSize * 4 : 0;
  const matrices = tied ? (quantizedHead === undefined ? Math.max(table, lmHead) : table + lmHead) : table + lmHead;
  return Math.ceil(matrices + positions + 2 * c.hiddenSize * 4);
}

/** `stored`: the bytes of the tensors a GGUF file keeps quantized (placement counts those, not f32). */
export function modelSpecFromConfig(config: ModelConfig, options: ModelSpecOptions, stored?: StoredBytes): ModelSpec {
  const weightDtype = options.weightDtype ?? 'f32';
  const kvBytes = KV_TOKENS_PER_LAYER * 2 * config.numKvHeads * config.headDim * 4;
  const modelId = options.modelId ?? defaultModelId(options.source);
  const spec = {
    modelId,
    source: options.source,
    ...(options.baseUrl ? { baseUrl: options.baseUrl } : {}),
    ...(options.revision ? { revision: options.revision } : {}),
    numLayers: config.numLayers,
    hiddenSize: config.hiddenSize,
    layerBytes: Math.ceil(layerWeightBytes(config, () => BYTES_PER_WEIGHT[weightDtype], stored) + kvBytes),
    weightDtype,
    replication: options.replication ?? 2,
    ...(options.light ? { light: true, headBytes: headBytesOf(config, weightDtype, stored) } : {}),
    ...(options.notice ? { notice: options.notice } : {}),
  };
  const parsed = ModelSpecSchema.safeParse(spec);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AigridError('ERR_INVALID_ARGUMENT', `model spec for ${options.source}: ${issue?.path.join('.')}: ${issue?.message}`);
  }
  return parsed.data;
}

/** The spec of a checkpoint already opened (only its config is read). */
export function modelSpecFromCheckpoint(checkpoint: TensorSource, options: ModelSpecOptions): ModelSpec {
  return modelSpecFromConfig(readConfig(checkpoint), options, storedBytesOf(checkpoint));
}

/** The stored bytes of a checkpoint's quantized tensors, when it keeps any (GGUF). */
export function storedBytesOf(checkpoint: TensorSource): StoredBytes | undefined {
  const { quantizedBytes } = checkpoint;
  return quantizedBytes && ((name) => quantizedBytes.call(checkpoint, name));
}

/** A model id from where the weights live: the hub id, or the last folder of a URL or path. */
export function defaultModelId(source: string): string {
  const trimmed = source.replace(/[?#].*$/, '').replace(/\/+$/, '');
  const hub = /^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/.test(trimmed);
  const id = hub ? trimmed : (trimmed.split('/').pop() ?? '');
  const cleaned = id.replace(/[^A-Za-z0-9._\/-]/g, '-').slice(0, 128);
  if (!ModelIdSchema.safeParse(cleaned).success) throw new AigridError('ERR_INVALID_ARGUMENT', `cannot make a model id of ${JSON.stringify(source)}; pass one`);
  return cleaned;
}

/**
 * Checks a spec against the checkpoint it names, before any weight is read: its layer count and
 * width, and that it does not understate the bytes a layer (and, for light clients, the head
 * parts) takes. Placement trusts those figures to fit layers to budgets, so a spec that lies low
 * would make peers load far past what they offered. ERR_UNSUPPORTED_MODEL / ERR_INVALID_ARGUMENT.
 */
export function checkSpecAgainst(spec: ModelSpec, checkpoint: TensorSource): void {
  const config = readConfig(checkpoint);
  if (config.numLayers !== spec.numLayers || config.hiddenSize !== spec.hiddenSize) {
    throw new AigridError('ERR_UNSUPPORTED_MODEL', `${spec.modelId}: the checkpoint has ${config.numLayers} layers of width ${config.hiddenSize}, the spec says ${spec.numLayers} of ${spec.hiddenSize}`);
  }
  const honest = modelSpecFromConfig(config, { modelId: spec.modelId, source: spec.source, weightDtype: spec.weightDtype, light: spec.light }, storedBytesOf(checkpoint));
  if (spec.layerBytes < honest.layerBytes) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${spec.modelId}: the spec says a layer takes ${spec.layerBytes} bytes; its checkpoint needs ${honest.layerBytes} (${spec.weightDtype} weights and the KV share)`);
  }
  if (spec.light && (spec.headBytes ?? 0) < honest.headBytes!) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${spec.modelId}: the spec says the head parts take ${spec.headBytes ?? 0} bytes; its checkpoint needs ${honest.headBytes}`);
  }
}
