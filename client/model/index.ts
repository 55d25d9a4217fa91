// The model runtime: checkpoints, configs, backends, shards of layers with KV caches, and the head.
// Node-only pieces (local folders, nodeGpu) are imported from their own modules.
export * from './checkpoint/index.ts';
export { parseConfig, type Family, type ModelConfig } from './config.ts';
export { headTensorNames, layerTensorNames } from './arch/names.ts';
export type { Backend, BackendKind, KvStore, KvStoreOptions, Ops, Table, Tensor, Weight, WeightDtype } from './backend/types.ts';
export { CpuBackend } from './backend/cpu.ts';
export { WebGpuBackend } from './backend/webgpu.ts';
export { createBackend, type BackendChoice, type BackendOptions } from './backend/select.ts';
export type { Layer, LayerArch } from './layers/index.ts';
export { layerArch } from './layers/index.ts';
export type { LoadProgress, TensorSource } from './load-weights.ts';
export { KvSessions, type KvSession, type KvSessionsOptions, type KvUsage } from './kv-sessions.ts';
export { DEFAULT_KV_BUDGET_BYTES, DEFAULT_MAX_SESSION_TOKENS, readConfig, Shard, type ShardLoadOptions } from './shard.ts';
export { Head, type HeadLoadOptions, type LogitsOptions } from './head.ts';
export { HeadBatcher, type HeadBatchStats } from './head-batcher.ts';
export { Tokenizer, type ChatMessage } from './tokenizer.ts';
export { applyRepetitionPenalty, checkSampling, sampleNext, type SamplingOptions } from './sampler.ts';
export { generate, withHead, type FinishReason, type GenerateOptions, type GenerateResult, type HeadLike, type LayerChain, type TokenModel } from './generate.ts';
