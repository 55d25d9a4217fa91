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
  const arch = layerArch(c);
  let most = 0;
  for (let l = 0; l < c.numLayers; l++) {
    let n = 0;
    for (const shape of arch.shapes(c, l).values()) n += shape.reduce((a, b) => a * b, 1);
    most = Math.max(most, n);
  }
  return most;
}

/** Bytes of the Head as a peer loads it: token table, LM head (one matrix when tied), norms, GPT-2 positions. */
export function headBytesOf(c: ModelConfig, dtype: ModelSpec['weightDtype']): number {
  const table = c.vocabSize * c.hiddenSize * (dtype === 'f32' ? 4 : 2);
  const lmHead = c.vocabSize * c.hiddenSize * BYTES_PER_WEIGHT[dtype];
  const tied = c.family === 'gpt2' || c.tieWordEmbeddings;
  const positions = c.family === 'gpt2' ? c.maxPositions * c.hiddenSize * 4 : 0;
  return Math.ceil((tied ? Math.max(table, lmHead) : table + lmHead) + positions + 2 * c.hiddenSize * 4);
}

export function modelSpecFromConfig(config: ModelConfig, options: ModelSpecOptions): ModelSpec {
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
    layerBytes: Math.ceil(weightsPerLayer(config) * BYTES_PER_WEIGHT[weightDtype] + kvBytes),
    weightDtype,
    replication: options.replication ?? 2,
    ...(options.light ? { light: true, headBytes: headBytesOf(config, weightDtype) } : {}),
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
  return modelSpecFromConfig(readConfig(checkpoint), options);
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
  const honest = modelSpecFromConfig(config, { modelId: spec.modelId, source: spec.source, weightDtype: spec.weightDtype, light: spec.light });
  if (spec.layerBytes < honest.layerBytes) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${spec.modelId}: the spec says a layer takes ${spec.layerBytes} bytes; its checkpoint needs ${honest.layerBytes} (${spec.weightDtype} weights and the KV share)`);
  }
  if (spec.light && (spec.headBytes ?? 0) < honest.headBytes!) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${spec.modelId}: the spec says the head parts take ${spec.headBytes ?? 0} bytes; its checkpoint needs ${honest.headBytes}`);
  }
}
