// GGUF files of the fixture models, written as llama.cpp's converter lays them out
// (fixtures/gguf-writer.ts), from the same weights as their safetensors checkpoints.
import { mkdir, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readCheckpoint } from '../fixtures/checkpoint-files.ts';
import { quantizeGgml } from '../fixtures/ggml-quantize.ts';
import { writeGgufFile, type GgufPreset, type HfTensor } from '../fixtures/gguf-writer.ts';
import { FIXTURE_DIR, fixtures, modelDir } from '../fixtures/index.ts';
import { configJson, refConfigFromJson } from '../fixtures/hf-config.ts';
import type { ReferenceModel } from '../fixtures/reference.ts';
import { chooseWeights } from '../fixtures/seed-search.ts';
import { MODEL_SPECS, type ModelSpec } from '../fixtures/specs.ts';
import { buildVocab } from '../fixtures/vocab.ts';
import type { GgmlType } from '../../kernels/ggml-quants.ts';

/**
 * The fixtures whose GGUF is the same model (Mistral's but for its window, which the llama
 * architecture lacks), read back tensor by tensor against their safetensors.
 */
export const GGUF_SAME_MODELS: readonly string[] = ['tiny-llama', 'tiny-qwen2', 'tiny-smollm2', 'tiny-llama3', 'tiny-qwen3', 'tiny-phi3', 'tiny-mistral', 'tiny-mixtral'];
/** Gemma's files hold the same tensors (but an untied Gemma 1/2 head) and imply another config (LLAMA_CPP_READS). */
export const GGUF_TENSOR_MODELS: readonly string[] = [...GGUF_SAME_MODELS, 'tiny-gemma', 'tiny-gemma2', 'tiny-gemma3'];
/**
 * Qwen3-MoE with every layer sparse, as the released models are: tiny-qwen3-moe's dense layer
 * (mlp_only_layers) has no GGUF form. The same spec and seed, written on first use.
 */
export const SPARSE_QWEN3_MOE = 'tiny-qwen3-moe-sparse';
/** Every model run from GGUF in the goldens. */
export const GGUF_MODELS: readonly string[] = [...GGUF_TENSOR_MODELS, SPARSE_QWEN3_MOE];

/**
 * What llama.cpp's loader takes from a checkpoint's GGUF that the file does not say, stated here
 * apart from the reader (client/model/gguf/arch.ts) so the two are checked against each other:
 * the converter writes no separate Gemma 1/2 head (token_embd serves), Gemma 2/3 below 27B scale
 * queries by head_dim^-0.5 (not query_pre_attn_scalar), Gemma 3 makes one layer in six global
 * (these three layers all local, on the local rope base), and Mistral runs without its window.
 */
const LLAMA_CPP_READS: Record<string, (config: Record<string, unknown>) => Record<string, unknown>> = {
  'tiny-gemma': (c) => ({ ...c, tie_word_embeddings: true }),
  'tiny-gemma2': (c) => ({ ...c, tie_word_embeddings: true, query_pre_attn_scalar: c.head_dim }),
  'tiny-gemma3': (c) => ({ ...c, query_pre_attn_scalar: c.head_dim, layer_types: (c.layer_types as string[]).map((_, i) => ((i + 1) % 6 ? 'sliding_attention' : 'full_attention')) }),
  'tiny-mistral': ({ sliding_window: _w, ...c }) => c,
};

/** The model whose greedy tokens a fixture's GGUF gives: the float64 reference as llama.cpp reads the file. */
export async function llamaCppReference(name: string): Promise<ReferenceModel> {
  const { config, tensors } = await ggufSource(name);
  const json = (LLAMA_CPP_READS[name] ?? ((c) => c))(config);
  const weights = new Map([...tensors].map(([n, t]) => [n, Float64Array.from(t.data)]));
  if (json.tie_word_embeddings === true) weights.delete('lm_head.weight');
  return { config: refConfigFromJson(json), weights };
}

let sparseSource: ReturnType<typeof sparseQwen3Moe> | undefined;

/** tiny-qwen3-moe without its dense layer, weights seeded as the fixtures' are (usable goldens, seed-search.ts). */
async function sparseQwen3Moe(): Promise<{ config: Record<string, unknown>; tensors: Map<string, HfTensor> }> {
  const base = MODEL_SPECS.find((s) => s.name === 'tiny-qwen3-moe')!;
  const spec: ModelSpec = { ...base, name: SPARSE_QWEN3_MOE, moe: { ...base.moe!, denseLayers: [] } };
  const vocab = buildVocab(spec);
  const config = configJson(spec, vocab, 'F32');
  const { weights } = chooseWeights(spec, vocab, refConfigFromJson(config));
  return { config, tensors: new Map([...weights].map(([n, t]) => [n, { shape: t.shape, data: t.data }])) };
}

/** The Hugging Face checkpoint a fixture's GGUF is converted from. */
async function ggufSource(name: string): Promise<{ config: Record<string, unknown>; tensors: Map<string, HfTensor> }> {
  if (name === SPARSE_QWEN3_MOE) return (sparseSource ??= sparseQwen3Moe());
  const folder = modelDir(name);
  const config = JSON.parse(await readFile(join(folder, 'config.json'), 'utf8')) as Record<string, unknown>;
  const tensors = new Map<string, HfTensor>();
  for (const [key, t] of await readCheckpoint(folder)) tensors.set(key, { shape: t.shape, data: Float32Array.from(t.values) });
  return { config, tensors };
}

/**
 * The fixture's whole-word vocabulary as GGUF tokenizer metadata: a byte-level BPE without merges
 * (the converter has no whole-word model), so ids decode to their words and the SDK can load it.
 * The tokenizer proper is tested on real BPE vocabularies (gguf-tokenizer.test.ts).
 */
function wordTokenizer(name: string): Record<string, unknown> {
  const vocab = buildVocab(MODEL_SPECS.find((s) => s.name === name)!);
  const id = (token: string | null) => (token === null ? undefined : vocab.ids.get(token));
  const meta: Record<string, unknown> = {
    'tokenizer.ggml.model': 'gpt2',
    'tokenizer.ggml.pre': 'default',
    'tokenizer.ggml.tokens': vocab.tokens,
    'tokenizer.ggml.token_type': vocab.tokens.map((_, i) => (vocab.specialIds.has(i) ? 3 : 1)),
    // llama.cpp requires merges: one the vocabulary can make (a word from two others).
    'tokenizer.ggml.merges': mergesOf(vocab.tokens, vocab.ids),
    'tokenizer.ggml.bos_token_id': id(vocab.bos),
    'tokenizer.ggml.eos_token_id': id(vocab.eos),
    'tokenizer.ggml.add_bos_token': vocab.addBos,
    'tokenizer.chat_template': vocab.chatTemplate,
  };
  // A vocabulary without a BOS (Qwen's) writes no BOS key, as the converter does.
  return Object.fromEntries(Object.entries(meta).filter(([, v]) => v !== undefined));
}

function mergesOf(tokens: readonly string[], ids: ReadonlyMap<string, number>): string[] {
  for (const t of tokens) {
    for (let k = 1; k < t.length; k++) if (ids.has(t.slice(0, k)) && ids.has(t.slice(k))) return [`${t.slice(0, k)} ${t.slice(k)}`];
  }
  throw new Error('the fixture vocabulary makes no merge');
}

/** The path of `name` written in `preset` (made on first use, beside the fixtures). */
export async function ggufFixture(name: string, preset: GgufPreset): Promise<string> {
  // One folder per fixture stamp: regenerated weights never meet files written from older ones.
  const dir = join(FIXTURE_DIR, 'gguf', (await fixtures()).stamp.slice(0, 16));
  const path = join(dir, `${name}-${preset}.gguf`);
  if (await stat(path).then(() => true, () => false)) return path;
  await mkdir(dir, { recursive: true });
  const { config, tensors } = await ggufSource(name);
  // Written aside and renamed, so test files that race for it never read half a file.
  const partial = `${path}.${process.pid}.part`;
  await writeGgufFile(partial, config, tensors, wordTokenizer(name === SPARSE_QWEN3_MOE ? 'tiny-qwen3-moe' : name), preset, (type, values) => quantizeGgml(type as GgmlType, values));
  await rename(partial, path);
  return path;
}
