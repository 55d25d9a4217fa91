// What a GGUF file's architecture means to the runtime: its metadata as the config.json the same
// model has on the hub, and each of its tensors under the name the runtime reads it by, with the
// changes llama.cpp's converter made undone (LLaMA's q/k rows reordered for its rope, Gemma's norm
// weights stored as 1 + w, experts stacked in one tensor). Facts of the converter's layout.
import { AigridError } from '../../../protocol/errors.ts';
import type { GgufTensor } from './container.ts';

/** How stored values become the runtime's. */
export type Transform =
  /** LLaMA's q/k rows: within each head the converter interleaves the two rope halves. */
  | { kind: 'unpermute'; heads: number }
  /** Gemma's norms were written as 1 + w; the runtime takes w (and adds 1 itself). */
  | { kind: 'minusOne' };

/** One runtime tensor: `rows` rows of a stored tensor starting at `rowStart` (an expert of a stack). */
export interface MappedTensor {
  stored: GgufTensor;
  /** PyTorch order: [rows, cols] for a matrix, [n] for a vector. */
  shape: number[];
  rowStart: number;
  transform?: Transform;
}

type Meta = Record<string, unknown>;

/** GGUF architecture -> the Hugging Face model_type and class it was converted from. */
const ARCHES: Record<string, { modelType: string; cls: string }> = {
  llama: { modelType: 'llama', cls: 'LlamaForCausalLM' },
  qwen2: { modelType: 'qwen2', cls: 'Qwen2ForCausalLM' },
  qwen3: { modelType: 'qwen3', cls: 'Qwen3ForCausalLM' },
  qwen3moe: { modelType: 'qwen3_moe', cls: 'Qwen3MoeForCausalLM' },
  phi3: { modelType: 'phi3', cls: 'Phi3ForCausalLM' },
  gemma: { modelType: 'gemma', cls: 'GemmaForCausalLM' },
  gemma2: { modelType: 'gemma2', cls: 'Gemma2ForCausalLM' },
  gemma3: { modelType: 'gemma3_text', cls: 'Gemma3ForCausalLM' },
};

function unsupported(what: string): AigridError {
  return new AigridError('ERR_UNSUPPORTED_MODEL', `GGUF ${what} is not supported`);
}

function corrupt(what: string): AigridError {
  return new AigridError('ERR_CHECKPOINT_CORRUPT', `GGUF ${what}`);
}

function count(meta: Meta, key: string, optional = false): number | undefined {
  const raw = meta[key];
  if (raw === undefined && optional) return undefined;
  const v = typeof raw === 'bigint' ? Number(raw) : raw;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw corrupt(`metadata ${key} = ${String(raw)} is not a positive integer`);
  return v;
}

function real(meta: Meta, key: string): number | undefined {
  const v = meta[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw corrupt(`metadata ${key} = ${String(v)} is not a positive number`);
  return v;
}

export function ggufArchitecture(meta: Meta): string {
  const arch = meta['general.architecture'];
  if (typeof arch !== 'string') throw corrupt('metadata general.architecture is missing');
  if (!Object.hasOwn(ARCHES, arch)) throw unsupported(`architecture ${JSON.stringify(arch.slice(0, 64))} (read: ${Object.keys(ARCHES).join(', ')})`);
  return arch;
}

/**
 * The config.json of the converted model, as far as the file says; what llama.cpp infers rather than
 * reads (Gemma's attention scale, its local layers' pattern and rope base) is inferred as it does.
 */
export function configFromGguf(meta: Meta, tensors: Map<string, GgufTensor>): Record<string, unknown> {
  const arch = ggufArchitecture(meta);
  const { modelType, cls } = ARCHES[arch]!;
  const key = (k: string) => `${arch}.${k}`;
  const hidden = count(meta, key('embedding_length'))!;
  const layers = count(meta, key('block_count'))!;
  const heads = count(meta, key('attention.head_count'))!;
  const embedding = tensors.get('token_embd.weight');
  if (!embedding || embedding.dims.length !== 2) throw new AigridError('ERR_TENSOR_MISSING', 'GGUF tensor token_embd.weight is missing');
  const headDim = count(meta, key('attention.key_length'), true) ?? hidden / heads;
  const config: Record<string, unknown> = {
    architectures: [cls],
    model_type: modelType,
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: count(meta, key('attention.head_count_kv'), true) ?? heads,
    head_dim: headDim,
    intermediate_size: count(meta, key('feed_forward_length')),
    // Gemma 3's converter drops embedding rows beyond the tokenizer: the table says the vocabulary.
    vocab_size: embedding.dims[1],
    max_position_embeddings: count(meta, key('context_length'), true) ?? 2048,
    rms_norm_eps: real(meta, key('attention.layer_norm_rms_epsilon')) ?? 1e-6,
    rope_theta: real(meta, key('rope.freq_base')) ?? 10_000,
    tie_word_embeddings: !tensors.has('output.weight'),
    bos_token_id: tokenId(meta, 'tokenizer.ggml.bos_token_id'),
    // Generation stops at end of turn as well as end of text (chat models name both).
    eos_token_id: [...new Set(['eos', 'eot', 'eom'].map((k) => tokenId(meta, `tokenizer.ggml.${k}_token_id`)).filter((id) => id !== undefined))],
  };
  const rotary = count(meta, key('rope.dimension_count'), true);
  if (rotary !== undefined && rotary !== headDim) config.partial_rotary_factor = rotary / headDim;
  const scaling = meta[key('rope.scaling.type')];
  if (scaling === 'linear') config.rope_scaling = { rope_type: 'linear', factor: real(meta, key('rope.scaling.factor')) };
  else if (scaling !== undefined && scaling !== 'none') throw unsupported(`${key('rope.scaling.type')} = ${JSON.stringify(scaling)}`);
  if (tensors.has('rope_freqs.weight')) config.rope_scaling = { rope_type: 'freq_factors' };
  // Phi-3's converter writes 0 for no window.
  const rawWindow = meta[key('attention.sliding_window')];
  const window = rawWindow === 0 || rawWindow === 0n ? undefined : count(meta, key('attention.sliding_window'), true);
  if (arch === 'phi3' && window !== undefined) config.sliding_window = window;
  if (arch === 'qwen3moe') {
    config.num_experts = count(meta, key('expert_count'));
    config.num_experts_per_tok = count(meta, key('expert_used_count'));
    config.moe_intermediate_size = count(meta, key('expert_feed_forward_length'));
    config.norm_topk_prob = meta[key('expert_weights_norm')] ?? true;
  }
  if (arch === 'llama' && meta[key('expert_count')] !== undefined) {
    config.architectures = ['MixtralForCausalLM'];
    config.model_type = 'mixtral';
    config.num_local_experts = count(meta, key('expert_count'));
    config.num_experts_per_tok = count(meta, key('expert_used_count'));
  }
  if (arch.startsWith('gemma')) Object.assign(config, gemmaFields(arch, meta, layers, hidden, heads, headDim, window));
  return config;
}

/** What llama.cpp knows of Gemma without reading it: its own constants, keyed by model size. */
function gemmaFields(arch: string, meta: Meta, layers: number, hidden: number, heads: number, headDim: number, window: number | undefined): Record<string, unknown> {
  // The 27B models scale queries by hidden / heads, the others by the head width.
  const is27b = (arch === 'gemma2' && layers === 46) || (arch === 'gemma3' && layers === 62);
  const fields: Record<string, unknown> = { query_pre_attn_scalar: is27b ? hidden / heads : headDim, hidden_activation: 'gelu_pytorch_tanh' };
  if (arch === 'gemma2') {
    fields.attn_logit_softcapping = real(meta, 'gemma2.attn_logit_softcapping') ?? null;
    fields.final_logit_softcapping = real(meta, 'gemma2.final_logit_softcapping') ?? null;
    fields.sliding_window = window ?? 4096;
  }
  if (arch === 'gemma3') {
    fields.final_logit_softcapping = real(meta, 'gemma3.final_logit_softcapping') ?? null;
    fields.rope_local_base_freq = 10_000;
    // Without a window every layer is global (sliding_window_pattern 1); else one in six.
    fields.sliding_window = window ?? 4096;
    fields.sliding_window_pattern = window === undefined ? 1 : 6;
  }
  return fields;
}

function tokenId(meta: Meta, key: string): number | undefined {
  const v = meta[key];
  const n = typeof v === 'bigint' ? Number(v) : v;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** Layer tensors: GGUF suffix -> runtime module, per architecture. */
function layerModules(arch: string, modelType: string): Record<string, string> {
  const attention = {
    attn_norm: 'input_layernorm',
    attn_q: 'self_attn.q_proj',
    attn_k: 'self_attn.k_proj',
    attn_v: 'self_attn.v_proj',
    attn_output: 'self_attn.o_proj',
    attn_q_norm: 'self_attn.q_norm',
    attn_k_norm: 'self_attn.k_norm',
  };
  const mlp = { ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj' };
  if (arch === 'gemma') return { ...attention, ...mlp, ffn_norm: 'post_attention_layernorm' };
  if (arch.startsWith('gemma')) {
    return { ...attention, ...mlp, post_attention_norm: 'post_attention_layernorm', ffn_norm: 'pre_feedforward_layernorm', post_ffw_norm: 'post_feedforward_layernorm' };
  }
  if (arch === 'phi3') return { ...attention, attn_qkv: 'self_attn.qkv_proj', ffn_up: 'mlp.gate_up_proj', ffn_down: 'mlp.down_proj', ffn_norm: 'post_attention_layernorm' };
  const router = modelType === 'mixtral' ? 'block_sparse_moe.gate' : 'mlp.gate';
  return { ...attention, ...mlp, ffn_norm: 'post_attention_layernorm', ffn_gate_inp: router };
}

/** Stacked experts: GGUF suffix -> the runtime's per-expert module (Qwen3-MoE / Mixtral). */
const EXPERTS: Record<string, [qwen3: string, mixtral: string]> = {
  ffn_gate_exps: ['gate_proj', 'w1'],
  ffn_up_exps: ['up_proj', 'w3'],
  ffn_down_exps: ['down_proj', 'w2'],
};

/** Every runtime tensor name of the file -> where and how to read it. */
export function mapTensors(meta: Meta, config: Record<string, unknown>, tensors: Map<string, GgufTensor>): Map<string, MappedTensor> {
  const arch = ggufArchitecture(meta);
  const modelType = String(config.model_type);
  const modules = layerModules(arch, modelType);
  const heads = config.num_attention_heads as number;
  const kvHeads = config.num_key_value_heads as number;
  // The converter reorders q/k rows for LLaMA-architecture files only (Mixtral's included).
  const permuted = arch === 'llama';
  const out = new Map<string, MappedTensor>();
  const add = (name: string, stored: GgufTensor, transform?: Transform, rowStart = 0, rows?: number) => {
    if (stored.dims.length > 3) throw corrupt(`tensor ${stored.name} has ${stored.dims.length} dimensions`);
    const cols = stored.dims[0]!;
    const shape = stored.dims.length === 1 ? [cols] : [rows ?? stored.dims.slice(1).reduce((a, b) => a * b, 1), cols];
    out.set(name, { stored, shape, rowStart, ...(transform ? { transform } : {}) });
  };
  for (const t of tensors.values()) {
    const global = t.name.match(/^(token_embd|output_norm|output|rope_freqs)\.weight$/);
    if (global) {
      const name = { token_embd: 'model.embed_tokens.weight', output_norm: 'model.norm.weight', output: 'lm_head.weight', rope_freqs: 'rope_freqs.weight' }[global[1]!]!;
      add(name, t, arch.startsWith('gemma') && global[1] === 'output_norm' ? { kind: 'minusOne' } : undefined);
      continue;
    }
    const m = t.name.match(/^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/);
    if (!m) continue; // tensors the runtime does not read (e.g. a vision tower's) are left out
    const [, layer, suffix, kind] = m as unknown as [string, string, string, string];
    const prefix = `model.layers.${Number(layer)}.`;
    const experts = EXPERTS[suffix];
    if (experts) {
      if (t.dims.length !== 3) throw corrupt(`tensor ${t.name} is not a stack of experts`);
      const [, rows, count] = t.dims as [number, number, number];
      const block = modelType === 'mixtral' ? 'block_sparse_moe' : 'mlp';
      for (let e = 0; e < count; e++) add(`${prefix}${block}.experts.${e}.${experts[modelType === 'mixtral' ? 1 : 0]}.weight`, t, undefined, e * rows, rows);
      continue;
    }
    const module = modules[suffix];
    if (!module) continue;
    let transform: Transform | undefined;
    if (permuted && (suffix === 'attn_q' || suffix === 'attn_k')) transform = { kind: 'unpermute', heads: suffix === 'attn_q' ? heads : kvHeads };
    if (arch.startsWith('gemma') && suffix.endsWith('norm')) transform = { kind: 'minusOne' };
    add(`${prefix}${module}.${kind}`, t, transform);
  }
  return out;
}

/** Undoes a transform on a tensor's values (PyTorch order, [rows, cols]), in place where it can. */
export function undoTransform(values: Float32Array, shape: number[], transform: Transform | undefined): Float32Array {
  if (!transform) return values;
  if (transform.kind === 'minusOne') {
    for (let i = 0; i < values.length; i++) values[i] = values[i]! - 1;
    return values;
  }
  const rows = shape[0]!;
  const cols = shape.length > 1 ? shape[1]! : 1;
  return unpermuteRows(values, rows, cols, transform.heads);
}

/**
 * LLaMA's q/k rows back in order: stored row h*d + 2i + j holds the original row h*d + j*(d/2) + i
 * (d: the head width). Rows are whole units (`rowLength` values, or bytes of quantized blocks).
 */
export function unpermuteRows<T extends Float32Array | Uint8Array>(values: T, rows: number, rowLength: number, heads: number): T {
  const d = rows / heads;
  if (!Number.isInteger(d) || d % 2 !== 0) throw corrupt(`a q/k tensor of ${rows} rows does not split into ${heads} heads of even width`);
  const out = new (values.constructor as new (n: number) => T)(values.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < d / 2; i++) {
      for (let j = 0; j < 2; j++) {
        const from = (h * d + 2 * i + j) * rowLength;
        out.set(values.subarray(from, from + rowLength), (h * d + j * (d / 2) + i) * rowLength);
      }
    }
  }
  return out;
}
