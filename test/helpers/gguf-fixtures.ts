// GGUF files of the fixture models, written as llama.cpp's converter lays them out
// (fixtures/gguf-writer.ts), from the same weights as their safetensors checkpoints.
import { mkdir, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readCheckpoint } from '../fixtures/checkpoint-files.ts';
import { quantizeGgml } from '../fixtures/ggml-quantize.ts';
import { writeGgufFile, type GgufPreset, type HfTensor } from '../fixtures/gguf-writer.ts';
import { FIXTURE_DIR, fixtures, modelDir } from '../fixtures/index.ts';
import { MODEL_SPECS } from '../fixtures/specs.ts';
import { buildVocab } from '../fixtures/vocab.ts';
import type { GgmlType } from '../../kernels/ggml-quants.ts';

/**
 * The fixtures whose GGUF is the same model (Mistral's but for its window, which the llama
 * architecture lacks): Gemma's query scale and local-layer pattern are not in the file (llama.cpp
 * infers them from the model's size) and the converter drops an untied Gemma head; Qwen3-MoE's
 * dense layer does not convert at all.
 */
export const GGUF_MODELS: readonly string[] = ['tiny-llama', 'tiny-qwen2', 'tiny-smollm2', 'tiny-llama3', 'tiny-qwen3', 'tiny-phi3', 'tiny-mistral', 'tiny-mixtral'];
/** Those read back tensor by tensor (Gemma's 1 + w norms undone), not run. */
export const GGUF_TENSOR_MODELS: readonly string[] = [...GGUF_MODELS, 'tiny-gemma', 'tiny-gemma2', 'tiny-gemma3'];

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
  const folder = modelDir(name);
  const config = JSON.parse(await readFile(join(folder, 'config.json'), 'utf8')) as Record<string, unknown>;
  const tensors = new Map<string, HfTensor>();
  for (const [key, t] of await readCheckpoint(folder)) tensors.set(key, { shape: t.shape, data: Float32Array.from(t.values) });
  // Written aside and renamed, so test files that race for it never read half a file.
  const partial = `${path}.${process.pid}.part`;
  await writeGgufFile(partial, config, tensors, wordTokenizer(name), preset, (type, values) => quantizeGgml(type as GgmlType, values));
  await rename(partial, path);
  return path;
}
