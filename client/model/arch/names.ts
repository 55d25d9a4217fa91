// Checkpoint tensor names per architecture, so a shard can ask for exactly its layers' tensors.
import type { ModelConfig } from '../config.ts';

export function layerTensorNames(config: ModelConfig, layer: number): string[] {
  if (config.family === 'gpt2') {
    const p = `h.${layer}.`;
    return ['ln_1', 'attn.c_attn', 'attn.c_proj', 'ln_2', 'mlp.c_fc', 'mlp.c_proj'].flatMap((m) => [`${p}${m}.weight`, `${p}${m}.bias`]);
  }
  const p = `model.layers.${layer}.`;
  const names = [
    `${p}input_layernorm.weight`,
    `${p}self_attn.q_proj.weight`,
    `${p}self_attn.k_proj.weight`,
    `${p}self_attn.v_proj.weight`,
    `${p}self_attn.o_proj.weight`,
    `${p}post_attention_layernorm.weight`,
    `${p}mlp.gate_proj.weight`,
    `${p}mlp.up_proj.weight`,
    `${p}mlp.down_proj.weight`,
  ];
  if (config.qkvBias) names.push(`${p}self_attn.q_proj.bias`, `${p}self_attn.k_proj.bias`, `${p}self_attn.v_proj.bias`);
  if (config.qkNorm) names.push(`${p}self_attn.q_norm.weight`, `${p}self_attn.k_norm.weight`);
  return names;
}

/** Tensors of the client-side head: embedding, final norm, LM head (tied models reuse the embedding). */
export function headTensorNames(config: ModelConfig): { embedding: string[]; final: string[] } {
  if (config.family === 'gpt2') return { embedding: ['wte.weight', 'wpe.weight'], final: ['ln_f.weight', 'ln_f.bias', 'wte.weight'] };
  const lmHead = config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  return { embedding: ['model.embed_tokens.weight'], final: ['model.norm.weight', lmHead] };
}
