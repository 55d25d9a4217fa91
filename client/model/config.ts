// config.json -> ModelConfig for the architectures the runtime implements. Anything it would have
// to ignore to run (an unknown architecture, an unknown rope scaling, sliding windows, another
// activation) is a named error instead of a silently wrong model.
import { AigridError } from '../../protocol/index.ts';
import type { RopeScaling } from '../../kernels/cpu/rope.ts';

export type Family = 'llama' | 'gemma' | 'gpt2';

export interface ModelConfig {
  family: Family;
  /** config.json model_type: llama, qwen2, gpt2. */
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  maxPositions: number;
  /** Sliding-window attention in every layer (Mistral, Phi-3): a query sees its last this-many keys. */
  slidingWindow?: number;
  /** llama family: RMSNorm eps; gpt2: LayerNorm eps. */
  normEps: number;
  ropeTheta: number;
  /** config rope_scaling (LLaMA family); absent: plain rope. */
  ropeScaling?: RopeScaling;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry biases (Qwen2). */
  qkvBias: boolean;
  /** Qwen3: an RMSNorm over each head of q and of k before rope (q_norm, k_norm). */
  qkNorm: boolean;
  /** Phi-3: q, k, v in one qkv_proj and gate, up in one gate_up_proj (split at load). */
  fusedProjections: boolean;
  activation: 'silu' | 'gelu_tanh';
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** Gemma 3 (text): what sets it apart from the LLaMA family. */
  gemma?: GemmaConfig;
  /** Mixture of experts (Qwen3-MoE): the MLP of a sparse layer is experts chosen per token. */
  moe?: MoeConfig;
}

export interface MoeConfig {
  /** How the checkpoint names a sparse layer's tensors (arch/names.ts moeTensorNames). */
  layout: 'qwen3' | 'mixtral';
  experts: number;
  /** Experts per token. */
  topK: number;
  /** Whether the chosen experts' weights are renormalized to sum to 1 (norm_topk_prob). */
  normalize: boolean;
  /** Each expert's intermediate size. */
  intermediate: number;
  /** Per layer: whether its MLP is the experts (else a dense MLP of intermediate_size). */
  sparse: boolean[];
}

/**
 * Gemma 1, 2 and 3: embeddings times sqrt(hidden); RMSNorm weights stored as w for (1 + w); a norm
 * after attention and around the MLP; GeGLU; attention scaled by query_pre_attn_scalar^-0.5; local
 * layers (sliding window) between global ones. Gemma 3 adds per-head q/k norms (qkNorm) and gives
 * local layers their own rope base (rope_local_base_freq, no rope scaling); Gemma 2 soft-caps the
 * attention scores and the final logits.
 */
export interface GemmaConfig {
  embedScale: number;
  queryScale: number;
  localRopeTheta: number;
  attnSoftcap?: number;
  finalSoftcap?: number;
  /** Gemma 2 and 3 norm the attention and MLP outputs too; Gemma 1 norms only their inputs. */
  sandwich: boolean;
  /** Per layer: the sliding window of a local layer, undefined for a global one. */
  windows: (number | undefined)[];
}

const SUPPORTED: Record<string, Family> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'llama',
  Qwen3ForCausalLM: 'llama',
  Phi3ForCausalLM: 'llama',
  Qwen3MoeForCausalLM: 'llama',
  MixtralForCausalLM: 'llama',
  GemmaForCausalLM: 'gemma',
  Gemma2ForCausalLM: 'gemma',
  Gemma3ForCausalLM: 'gemma',
  MistralForCausalLM: 'llama',
  GPT2LMHeadModel: 'gpt2',
};

type Json = Record<string, unknown>;

function unsupported(field: string, value: unknown): AigridError {
  return new AigridError('ERR_UNSUPPORTED_MODEL', `config.json ${field} = ${JSON.stringify(value)} is not supported`);
}

function int(json: Json, key: string, fallback?: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new AigridError('ERR_UNSUPPORTED_MODEL', `config.json ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function num(json: Json, key: string, fallback: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !(v > 0)) throw unsupported(key, v);
  return v;
}

function tokenIds(value: unknown): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.filter((v): v is number => Number.isInteger(v));
}

export function parseConfig(json: Json, generation: Json = {}): ModelConfig {
  const archs = json.architectures;
  const arch = Array.isArray(archs) ? String(archs[0]) : undefined;
  const family = arch ? SUPPORTED[arch] : undefined;
  if (!family) throw unsupported('architectures', archs ?? null);
  const eosTokenIds = tokenIds(generation.eos_token_id ?? json.eos_token_id);
  const bos = generation.bos_token_id ?? json.bos_token_id;
  const bosTokenId = Number.isInteger(bos) ? (bos as number) : null;
  if (family === 'gpt2') return gpt2(json, bosTokenId, eosTokenIds);
  return family === 'gemma' ? gemma(json, bosTokenId, eosTokenIds) : llama(json, bosTokenId, eosTokenIds);
}

/**
 * rope_scaling as Hugging Face writes it (`rope_type`, or `type` in older configs): none or
 * `default`, `linear`, `llama3`. Others (dynamic, yarn, longrope...) keep their named error.
 */
function parseRopeScaling(value: unknown): RopeScaling | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw unsupported('rope_scaling', value);
  const json = value as Json;
  const type = json.rope_type ?? json.type;
  if (type === 'default') return undefined;
  const positive = (key: string) => {
    const v = json[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw unsupported(`rope_scaling.${key}`, v ?? null);
    return v;
  };
  if (type === 'linear') return { type, factor: positive('factor') };
  // A GGUF file's rope_freqs table (gguf/reader.ts); its length is checked against the head below.
  if (type === 'freq_factors') {
    const factors = json.factors;
    if (!Array.isArray(factors) || factors.length > 4096 || !factors.every((v) => typeof v === 'number' && Number.isFinite(v) && v > 0)) throw unsupported('rope_scaling.factors', '[...]');
    return { type: 'factors', factors: factors as number[] };
  }
  if (type === 'llama3') {
    const scaling = { type, factor: positive('factor'), lowFreqFactor: positive('low_freq_factor'), highFreqFactor: positive('high_freq_factor'), originalMaxPositions: positive('original_max_position_embeddings') } as const;
    if (scaling.highFreqFactor <= scaling.lowFreqFactor) throw unsupported('rope_scaling.high_freq_factor', scaling.highFreqFactor);
    return scaling;
  }
  throw unsupported('rope_scaling.rope_type', type ?? null);
}

function llama(json: Json, bosTokenId: number | null, eosTokenIds: number[]): ModelConfig {
  const ropeScaling = parseRopeScaling(json.rope_scaling);
  // Qwen2's windows apply to some layers only and are refused by name; Mistral's and Phi-3's to all.
  if (json.use_sliding_window === true) throw unsupported('use_sliding_window', true);
  const window = ['mistral', 'mixtral', 'phi3'].includes(String(json.model_type)) && json.sliding_window ? json.sliding_window : undefined;
  if (window !== undefined && !(Number.isInteger(window) && (window as number) > 0)) throw unsupported('sliding_window', window);
  if (json.partial_rotary_factor !== undefined && json.partial_rotary_factor !== 1) throw unsupported('partial_rotary_factor', json.partial_rotary_factor);
  if (json.mlp_bias === true) throw unsupported('mlp_bias', true);
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') throw unsupported('hidden_act', act);
  const modelType = String(json.model_type ?? 'llama');
  const hiddenSize = int(json, 'hidden_size');
  const numHeads = int(json, 'num_attention_heads');
  const numKvHeads = int(json, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) throw unsupported('num_key_value_heads', numKvHeads);
  const headDim = int(json, 'head_dim', hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw unsupported('head_dim', headDim);
  if (ropeScaling?.type === 'factors' && ropeScaling.factors.length !== headDim / 2) throw unsupported('rope_scaling.factors.length', ropeScaling.factors.length);
  // Qwen2 always has q/k/v biases; LLaMA and Qwen3 have them only with attention_bias.
  const qkvBias = modelType === 'qwen2' || json.attention_bias === true;
  return {
    family: 'llama',
    modelType,
    vocabSize: int(json, 'vocab_size'),
    hiddenSize,
    numLayers: int(json, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: int(json, 'intermediate_size'),
    maxPositions: int(json, 'max_position_embeddings', 2048),
    ...(window !== undefined ? { slidingWindow: window as number } : {}),
    normEps: num(json, 'rms_norm_eps', 1e-6),
    ropeTheta: num(json, 'rope_theta', 10000),
    ...(ropeScaling ? { ropeScaling } : {}),
    tieWordEmbeddings: json.tie_word_embeddings === true,
    qkvBias,
    qkNorm: modelType === 'qwen3' || modelType === 'qwen3_moe',
    fusedProjections: modelType === 'phi3',
    activation: 'silu',
    bosTokenId,
    eosTokenIds,
    ...(modelType === 'qwen3_moe' ? { moe: parseMoe(json, int(json, 'num_hidden_layers')) } : {}),
    ...(modelType === 'mixtral' ? { moe: parseMixtral(json, int(json, 'num_hidden_layers')) } : {}),
  };
}

/** Qwen3-MoE's experts: which layers are sparse (decoder_sparse_step, mlp_only_layers), how many experts, how many per token. */
function parseMoe(json: Json, layers: number): MoeConfig {
  const experts = int(json, 'num_experts');
  const topK = int(json, 'num_experts_per_tok');
  if (topK > experts) throw unsupported('num_experts_per_tok', topK);
  if (experts > 256) throw unsupported('num_experts', experts);
  const step = int(json, 'decoder_sparse_step', 1);
  const dense = json.mlp_only_layers ?? [];
  if (!Array.isArray(dense) || !dense.every((l) => Number.isInteger(l))) throw unsupported('mlp_only_layers', dense);
  return {
    layout: 'qwen3',
    experts,
    topK,
    normalize: json.norm_topk_prob === true,
    intermediate: int(json, 'moe_intermediate_size'),
    sparse: Array.from({ length: layers }, (_, i) => !dense.includes(i) && (i + 1) % step === 0),
  };
}

/** Mixtral: every layer sparse, num_local_experts of intermediate_size, the chosen weights always renormalized. */
function parseMixtral(json: Json, layers: number): MoeConfig {
  const experts = int(json, 'num_local_experts');
  const topK = int(json, 'num_experts_per_tok');
  if (topK > experts) throw unsupported('num_experts_per_tok', topK);
  if (experts > 256) throw unsupported('num_local_experts', experts);
  return { layout: 'mixtral', experts, topK, normalize: true, intermediate: int(json, 'intermediate_size'), sparse: Array.from({ length: layers }, () => true) };
}

function gemma(json: Json, bosTokenId: number | null, eosTokenIds: number[]): ModelConfig {
  const v1 = json.model_type === 'gemma';
  const v2 = json.model_type === 'gemma2';
  // Gemma 2 soft-caps; Gemma 3 does not (a config that asks it to is not one we can check).
  const softcap = (field: string) => {
    const value = json[field];
    if (value === undefined || value === null) return undefined;
    if (!v2 || typeof value !== 'number' || !(value > 0)) throw unsupported(field, value);
    return value;
  };
  const [attnSoftcap, finalSoftcap] = [softcap('attn_logit_softcapping'), softcap('final_logit_softcapping')];
  if (json.use_bidirectional_attention === true) throw unsupported('use_bidirectional_attention', true);
  const act = json.hidden_activation ?? json.hidden_act ?? 'gelu_pytorch_tanh';
  if (act !== 'gelu_pytorch_tanh') throw unsupported('hidden_activation', act);
  const hiddenSize = int(json, 'hidden_size');
  const numLayers = int(json, 'num_hidden_layers');
  const numHeads = int(json, 'num_attention_heads');
  const numKvHeads = int(json, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) throw unsupported('num_key_value_heads', numKvHeads);
  const headDim = int(json, 'head_dim', 256);
  if (headDim % 2 !== 0) throw unsupported('head_dim', headDim);
  const window = int(json, 'sliding_window', 4096);
  // layer_types in newer configs; else every sliding_window_pattern-th layer is global (Gemma 2:
  // every other one).
  const pattern = v2 ? 2 : int(json, 'sliding_window_pattern', 6);
  // Gemma 1 has no local layers.
  const types = v1 ? Array.from({ length: numLayers }, () => 'full_attention') : Array.isArray(json.layer_types) ? json.layer_types : Array.from({ length: numLayers }, (_, i) => ((i + 1) % pattern ? 'sliding_attention' : 'full_attention'));
  if (types.length !== numLayers || types.some((t) => t !== 'sliding_attention' && t !== 'full_attention')) throw unsupported('layer_types', json.layer_types);
  const ropeScaling = parseRopeScaling(json.rope_scaling);
  return {
    family: 'gemma',
    modelType: String(json.model_type ?? 'gemma3_text'),
    vocabSize: int(json, 'vocab_size'),
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: int(json, 'intermediate_size'),
    maxPositions: int(json, 'max_position_embeddings', 131072),
    normEps: num(json, 'rms_norm_eps', 1e-6),
    ropeTheta: num(json, 'rope_theta', v1 || v2 ? 10_000 : 1_000_000),
    ...(ropeScaling ? { ropeScaling } : {}),
    tieWordEmbeddings: json.tie_word_embeddings !== false,
    qkvBias: json.attention_bias === true,
    qkNorm: !v1 && !v2,
    fusedProjections: false,
    activation: 'gelu_tanh',
    bosTokenId,
    eosTokenIds,
    gemma: {
      embedScale: Math.fround(Math.sqrt(hiddenSize)),
      queryScale: (v1 ? headDim : num(json, 'query_pre_attn_scalar', 256)) ** -0.5,
      localRopeTheta: v1 || v2 ? num(json, 'rope_theta', 10_000) : num(json, 'rope_local_base_freq', 10_000),
      sandwich: !v1,
      ...(attnSoftcap ? { attnSoftcap } : {}),
      ...(finalSoftcap ? { finalSoftcap } : {}),
      windows: types.map((t) => (t === 'sliding_attention' ? window : undefined)),
    },
  };
}

function gpt2(json: Json, bosTokenId: number | null, eosTokenIds: number[]): ModelConfig {
  const act = json.activation_function ?? 'gelu_new';
  if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') throw unsupported('activation_function', act);
  if (json.scale_attn_by_inverse_layer_idx === true) throw unsupported('scale_attn_by_inverse_layer_idx', true);
  if (json.reorder_and_upcast_attn === true) throw unsupported('reorder_and_upcast_attn', true);
  const hiddenSize = int(json, 'n_embd');
  const numHeads = int(json, 'n_head');
  if (hiddenSize % numHeads !== 0) throw unsupported('n_head', numHeads);
  return {
    family: 'gpt2',
    modelType: 'gpt2',
    vocabSize: int(json, 'vocab_size'),
    hiddenSize,
    numLayers: int(json, 'n_layer'),
    numHeads,
    numKvHeads: numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: int(json, 'n_inner', 4 * hiddenSize),
    maxPositions: int(json, 'n_positions', 1024),
    normEps: num(json, 'layer_norm_epsilon', 1e-5),
    ropeTheta: 0,
    tieWordEmbeddings: true,
    qkvBias: true,
    qkNorm: false,
    fusedProjections: false,
    activation: 'gelu_tanh',
    bosTokenId,
    eosTokenIds,
  };
}
