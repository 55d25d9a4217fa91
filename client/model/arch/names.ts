// Checkpoint tensor names per architecture, so a shard can ask for exactly its layers' tensors.
import type { ModelConfig, MoeConfig } from '../config.ts';

export function layerTensorNames(config: ModelConfig, layer: number): string[] {
  if (config.family === 'gpt2') {
    const p = `h.${layer}.`;
    return ['ln_1', 'attn.c_attn', 'attn.c_proj', 'ln_2', 'mlp.c_fc', 'mlp.c_proj'].flatMap((m) => [`${p}${m}.weight`, `${p}${m}.bias`]);
  }
  const p = `model.layers.${layer}.`;
  if (config.family === 'gemma') {
    const norms = config.gemma?.sandwich ? ['pre_feedforward_layernorm', 'post_feedforward_layernorm'] : [];
    const modules = ['input_layernorm', 'post_attention_layernorm', ...norms, ...(config.qkNorm ? ['self_attn.q_norm', 'self_attn.k_norm'] : [])];
    return [...modules, 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'].map((m) => `${p}${m}.weight`);
  }
  const projections = config.fusedProjections
    ? ['self_attn.qkv_proj', 'mlp.gate_up_proj']
    : ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'mlp.gate_proj', 'mlp.up_proj'];
  const names = [...projections, 'input_layernorm', 'self_attn.o_proj', 'post_attention_layernorm', 'mlp.down_proj'].map((m) => `${p}${m}.weight`);
  if (config.qkvBias) names.push(`${p}self_attn.q_proj.bias`, `${p}self_attn.k_proj.bias`, `${p}self_attn.v_proj.bias`);
  if (config.qkNorm) names.push(`${p}self_attn.q_norm.weight`, `${p}self_attn.k_norm.weight`);
  const moe = config.moe?.sparse[layer] ? config.moe : undefined;
  if (!moe) return names;
  const { router, experts } = moeTensorNames(moe, p);
  return [...names.filter((n) => !/\.mlp\.(gate|up|down)_proj\.weight$/.test(n)), router, ...experts.flatMap((x) => [x.gate, x.up, x.down])];
}

/** A sparse layer's router and experts as its checkpoint names them (Qwen3-MoE under mlp., Mixtral under block_sparse_moe. with w1 = gate, w3 = up, w2 = down). */
export function moeTensorNames(moe: MoeConfig, prefix: string): { router: string; experts: { gate: string; up: string; down: string }[] } {
  const mixtral = moe.layout === 'mixtral';
  const block = `${prefix}${mixtral ? 'block_sparse_moe' : 'mlp'}.`;
  const experts = Array.from({ length: moe.experts }, (_, e) => {
    const q = `${block}experts.${e}.`;
    return mixtral ? { gate: `${q}w1.weight`, up: `${q}w3.weight`, down: `${q}w2.weight` } : { gate: `${q}gate_proj.weight`, up: `${q}up_proj.weight`, down: `${q}down_proj.weight` };
  });
  return { router: `${block}gate.weight`, experts };
}

/** Tensors of the client-side head: embedding, final norm, LM head (tied models reuse the embedding). */
export function headTensorNames(config: ModelConfig): { embedding: string[]; final: string[] } {
  if (config.family === 'gpt2') return { embedding: ['wte.weight', 'wpe.weight'], final: ['ln_f.weight', 'ln_f.bias', 'wte.weight'] };
  const lmHead = config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  return { embedding: ['model.embed_tokens.weight'], final: ['model.norm.weight', lmHead] };
}
