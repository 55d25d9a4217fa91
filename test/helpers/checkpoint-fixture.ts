// Tiny LLaMA-named checkpoints written with encodeSafetensors, as single files or shards with an
// index, mixing F32, F16 and BF16 so every conversion path is exercised.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeSafetensors, type SafetensorsDtype, type TensorToWrite } from '../../client/model/checkpoint/safetensors.ts';
import { mulberry32 } from './random.ts';

export interface TinyLlama {
  layers: number;
  hidden: number;
  intermediate: number;
  vocab: number;
}

export const TINY: TinyLlama = { layers: 4, hidden: 8, intermediate: 12, vocab: 16 };

/** Random finite data of a dtype: F16 as bit patterns with exponent < 31, BF16 as the top half of random f32. */
function randomData(rand: () => number, dtype: SafetensorsDtype, elements: number): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(Float32Array.from({ length: elements }, () => rand() * 4 - 2).buffer);
  if (dtype === 'F16') {
    return new Uint8Array(Uint16Array.from({ length: elements }, () => {
      const bits = Math.floor(rand() * 65536);
      return (bits & 0x7c00) === 0x7c00 ? bits & ~0x4000 : bits;
    }).buffer);
  }
  if (dtype === 'BF16') {
    const f32 = Float32Array.from({ length: elements }, () => (rand() * 2 - 1) * 1000);
    return new Uint8Array(Uint16Array.from(new Uint32Array(f32.buffer), (u) => u >>> 16).buffer);
  }
  if (dtype === 'I64') return new Uint8Array(new BigInt64Array(elements).map((_, i) => BigInt(i)).buffer);
  throw new Error(`no random data for ${dtype}`);
}

/** The tensors of a tiny LLaMA in file order: attention in F16, MLP in BF16, norms and embeddings in F32. */
export function tinyLlamaTensors(seed = 1, m: TinyLlama = TINY): Record<string, TensorToWrite> {
  const rand = mulberry32(seed);
  const out: Record<string, TensorToWrite> = {};
  const add = (name: string, dtype: SafetensorsDtype, shape: number[]) => {
    out[name] = { dtype, shape, data: randomData(rand, dtype, shape.reduce((a, b) => a * b, 1)) };
  };
  add('model.embed_tokens.weight', 'F32', [m.vocab, m.hidden]);
  for (let i = 0; i < m.layers; i++) {
    const p = `model.layers.${i}`;
    add(`${p}.input_layernorm.weight`, 'F32', [m.hidden]);
    for (const proj of ['q', 'k', 'v', 'o']) add(`${p}.self_attn.${proj}_proj.weight`, 'F16', [m.hidden, m.hidden]);
    add(`${p}.post_attention_layernorm.weight`, 'F32', [m.hidden]);
    add(`${p}.mlp.gate_proj.weight`, 'BF16', [m.intermediate, m.hidden]);
    add(`${p}.mlp.up_proj.weight`, 'BF16', [m.intermediate, m.hidden]);
    add(`${p}.mlp.down_proj.weight`, 'BF16', [m.hidden, m.intermediate]);
  }
  add('model.norm.weight', 'F32', [m.hidden]);
  add('lm_head.weight', 'BF16', [m.vocab, m.hidden]);
  return out;
}

export function tinyLlamaConfig(m: TinyLlama = TINY): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: m.hidden, intermediate_size: m.intermediate,
    num_hidden_layers: m.layers, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: m.vocab,
    rms_norm_eps: 1e-5, torch_dtype: 'bfloat16',
  };
}

export interface WriteModelOptions {
  /** Shard number per tensor; absent: one model.safetensors. */
  shardOf?: (name: string) => number;
  shards?: number;
  config?: Record<string, unknown>;
  generationConfig?: Record<string, unknown>;
  tokenizer?: boolean;
}

/** Writes a model folder; returns the bytes of each weight file by name. */
export async function writeModel(dir: string, tensors: Record<string, TensorToWrite>, options: WriteModelOptions = {}): Promise<Map<string, Uint8Array>> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(options.config ?? tinyLlamaConfig()));
  if (options.generationConfig) await writeFile(join(dir, 'generation_config.json'), JSON.stringify(options.generationConfig));
  if (options.tokenizer ?? true) {
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0', model: { type: 'BPE', vocab: {} } }));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>' }));
  }
  const files = new Map<string, Uint8Array>();
  const { shardOf, shards = 1 } = options;
  if (!shardOf) {
    files.set('model.safetensors', encodeSafetensors(tensors));
  } else {
    const name = (i: number) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const weightMap: Record<string, string> = {};
    for (let i = 0; i < shards; i++) {
      const part = Object.fromEntries(Object.entries(tensors).filter(([n]) => shardOf(n) === i));
      for (const n of Object.keys(part)) weightMap[n] = name(i);
      files.set(name(i), encodeSafetensors(part));
    }
    const totalSize = Object.values(tensors).reduce((s, t) => s + t.data.byteLength, 0);
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }));
  }
  for (const [file, bytes] of files) await writeFile(join(dir, file), bytes);
  return files;
}
