// What serving a model will take, printed before any weight downloads: the bytes of a layer and of
// the head (quantized ones as their files store them), and how many peers of a given budget hold
// the model at the asked replication.
import type { ModelSpec } from '../../protocol/index.ts';
import { headBytesOf, modelSpecFromConfig } from '../grid/model-spec.ts';
import type { ModelConfig } from '../model/config.ts';

const MB = 1024 * 1024;
const mb = (bytes: number) => (bytes / MB < 10 ? (bytes / MB).toFixed(1) : Math.round(bytes / MB).toString());

export interface ServePlan {
  layerBytes: number;
  headBytes: number;
  totalBytes: number;
  /** Layers one peer of the budget holds (0: not even one). */
  layersPerPeer: number;
  /** Peers of the budget that hold every layer `replication` times (Infinity when a layer does not fit). */
  peers: number;
}

export function planServing(spec: ModelSpec, config: ModelConfig, memoryBudgetMB: number, stored?: (name: string) => number | undefined): ServePlan {
  const headBytes = headBytesOf(config, spec.weightDtype, stored);
  const layersPerPeer = Math.floor((memoryBudgetMB * MB) / spec.layerBytes);
  const peers = layersPerPeer === 0 ? Infinity : Math.ceil(spec.numLayers / Math.min(layersPerPeer, spec.numLayers)) * spec.replication;
  return { layerBytes: spec.layerBytes, headBytes, totalBytes: spec.layerBytes * spec.numLayers + headBytes, layersPerPeer, peers };
}

export function describePlan(spec: ModelSpec, plan: ServePlan, memoryBudgetMB: number): string {
  const need = Number.isFinite(plan.peers)
    ? `${plan.peers} peer${plan.peers === 1 ? '' : 's'} of ${memoryBudgetMB} MB hold it (${Math.min(plan.layersPerPeer, spec.numLayers)} layers each, replication ${spec.replication})`
    : `one layer does not fit in ${memoryBudgetMB} MB`;
  return `plan: ${spec.modelId}: ${spec.numLayers} layers of ${mb(plan.layerBytes)} MB (weights and a KV share) + head ${mb(plan.headBytes)} MB = ${mb(plan.totalBytes)} MB; ${need}`;
}
