// The fixture models against an independent implementation: @huggingface/transformers runs each
// model's ONNX twin offline and must give the float64 reference's greedy tokens and logits; the
// safetensors files, configs and tokenizers must agree with each other and across storage variants.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env, pipeline, Tensor } from '@huggingface/transformers';
import type { PreTrainedModel, PreTrainedTokenizer } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FixtureModel, FixtureSet, ReferenceModel } from './fixtures/index.ts';
import {
  ONNX_MODELS, f16Wire, FIXTURE_DIR, fixtures, generateFixtures, GOLDEN_PROMPTS, GOLDEN_STEPS, greedy, loadReference,
  MIN_GAP, readCheckpoint, ReferenceSession, topTwo, VARIANT_MODELS,
} from './fixtures/index.ts';

let set: FixtureSet;
const model = (name: string): FixtureModel => set.models.find((m) => m.name === name)!;

beforeAll(async () => {
  set = await fixtures();
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = `${FIXTURE_DIR}/`;
});

/**
 * Logits span about +-100 and the random layers amplify float32 rounding (measured up to 1.6e-3
 * against float64), yet a wrong mask, RoPE or bias moves them by whole units. Far below MIN_GAP.
 */
const LOGIT_TOLERANCE = 5e-3;

const ids = (t: Tensor): number[] => Array.from(t.data as BigInt64Array, Number);
const int64 = (rows: number[][]) => new Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0]!.length]);

/** Largest |actual - expected| over [positions, vocab] logits. */
function maxDiff(actual: Float32Array, expected: Float64Array[]): number {
  let worst = 0;
  for (const [p, row] of expected.entries()) {
    for (let v = 0; v < row.length; v++) worst = Math.max(worst, Math.abs(actual[p * row.length + v]! - row[v]!));
  }
  return worst;
}

describe.each(ONNX_MODELS)('%s through @huggingface/transformers', (name) => {
  let tokenizer: PreTrainedTokenizer;
  let lm: PreTrainedModel;
  let ref: ReferenceModel;

  beforeAll(async () => {
    tokenizer = await AutoTokenizer.from_pretrained(name);
    lm = await AutoModelForCausalLM.from_pretrained(name, { device: 'cpu', dtype: 'fp32' });
    ref = await loadReference(name);
  });
  afterAll(async () => {
    await lm?.dispose();
  });

  it('tokenizes the golden prompts to the ids the goldens use, and decodes them back', () => {
    for (const g of model(name).golden) {
      expect(ids(tokenizer(g.prompt).input_ids as Tensor)).toEqual(g.ids);
      expect(tokenizer.decode(g.ids, { skip_special_tokens: true })).toBe(g.prompt);
    }
    expect(model(name).golden.map((g) => g.prompt)).toEqual(GOLDEN_PROMPTS);
  });

  it('generates the float64 reference greedy tokens for every golden prompt', async () => {
    for (const g of model(name).golden) {
      const expected = greedy(ref, g.ids, GOLDEN_STEPS);
      expect(expected.tokens).toEqual(g.greedy);
      expect(Math.min(...expected.gaps)).toBeGreaterThanOrEqual(MIN_GAP);
      expect(greedy(ref, g.ids, GOLDEN_STEPS, f16Wire).tokens).toEqual(g.greedy);
      const out = (await lm.generate({
        input_ids: int64([g.ids]), attention_mask: int64([g.ids.map(() => 1)]), max_new_tokens: GOLDEN_STEPS, do_sample: false,
      })) as Tensor;
      expect(ids(out).slice(g.ids.length)).toEqual(g.greedy);
    }
  });

  it('keeps every golden in a left-padded batch', async () => {
    tokenizer.padding_side = 'left';
    const batch = tokenizer(GOLDEN_PROMPTS as string[], { padding: true });
    const out = (await lm.generate({ ...batch, max_new_tokens: GOLDEN_STEPS, do_sample: false })) as Tensor;
    const width = out.dims[1]!;
    const rows = ids(out);
    model(name).golden.forEach((g, i) => expect(rows.slice((i + 1) * width - GOLDEN_STEPS, (i + 1) * width)).toEqual(g.greedy));
  });

  it('matches the reference logits on prefill and on a step that reads the past', async () => {
    const g = model(name).golden.at(-1)!;
    const n = g.ids.length;
    const session = new ReferenceSession(ref);
    const prefill = session.append(g.ids);
    const first = await lm.forward({ input_ids: int64([g.ids]), attention_mask: int64([g.ids.map(() => 1)]), position_ids: int64([g.ids.map((_, i) => i)]) });
    expect(first.logits.dims).toEqual([1, n, ref.config.vocabSize]);
    expect(maxDiff(first.logits.data, prefill)).toBeLessThan(LOGIT_TOLERANCE);

    const next = topTwo(prefill.at(-1)!).id;
    const past: Record<string, Tensor> = {};
    for (const key of Object.keys(first)) if (key.startsWith('present.')) past[key.replace('present.', 'past_key_values.')] = first[key];
    expect(Object.keys(past)).toHaveLength(2 * ref.config.layers);
    const step = await lm.forward({
      input_ids: int64([[next]]), attention_mask: int64([[...g.ids, next].map(() => 1)]), position_ids: int64([[n]]), past_key_values: past,
    });
    expect(step.logits.dims).toEqual([1, 1, ref.config.vocabSize]);
    expect(maxDiff(step.logits.data, session.append([next]))).toBeLessThan(LOGIT_TOLERANCE);
  });

  it('renders and tokenizes the chat template', () => {
    const messages = [{ role: 'system', content: 'you are a little robot' }, { role: 'user', content: 'hello world' }];
    const chatml = name.startsWith('tiny-qwen') || name === 'tiny-smollm2';
    const text = tokenizer.apply_chat_template(messages, { tokenize: false, add_generation_prompt: true }) as string;
    const expected = chatml
      ? '<|im_start|>system\nyou are a little robot<|im_end|>\n<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n'
      : `${tokenizer.bos_token}system : you are a little robot ${tokenizer.eos_token} user : hello world ${tokenizer.eos_token} assistant :`;
    expect(text).toBe(expected);
    const tokens = chatml
      ? ['<|im_start|>', 'system', 'you', 'are', 'a', 'little', 'robot', '<|im_end|>', '<|im_start|>', 'user', 'hello', 'world', '<|im_end|>', '<|im_start|>', 'assistant']
      : [tokenizer.bos_token!, 'system', ':', 'you', 'are', 'a', 'little', 'robot', tokenizer.eos_token!, 'user', ':', 'hello', 'world', tokenizer.eos_token!, 'assistant', ':'];
    const encoded = tokenizer.apply_chat_template(messages, { tokenize: true, add_generation_prompt: true, return_tensor: false, return_dict: false }) as number[];
    expect(encoded).toEqual(tokenizer.convert_tokens_to_ids(tokens));
    expect(encoded.every((id) => id >= 0 && id < model(name).tokenizerSize)).toBe(true);
  });
});

describe('text-generation pipeline', () => {
  it('continues a prompt with the golden tokens (tiny-llama)', async () => {
    const generator = await pipeline('text-generation', 'tiny-llama', { device: 'cpu', dtype: 'fp32' });
    const tokenizer = await AutoTokenizer.from_pretrained('tiny-llama');
    const g = model('tiny-llama').golden[1]!;
    const [out] = (await generator(g.prompt, { max_new_tokens: GOLDEN_STEPS, do_sample: false })) as { generated_text: string }[];
    expect(out!.generated_text).toBe(tokenizer.decode([...g.ids, ...g.greedy], { skip_special_tokens: true }));
    await generator.dispose();
  });
});

describe('checkpoint files', () => {
  it('hold Hugging Face tensor names in F32 and give the goldens when read back', async () => {
    const llama = await readCheckpoint(model('tiny-llama').dir);
    expect(llama.has('lm_head.weight')).toBe(true);
    expect(llama.get('model.layers.3.self_attn.k_proj.weight')!.shape).toEqual([32, 64]);
    const qwen = await readCheckpoint(model('tiny-qwen2').dir);
    expect(qwen.has('lm_head.weight')).toBe(false);
    expect(qwen.get('model.layers.1.self_attn.q_proj.bias')!.shape).toEqual([64]);
    expect(qwen.has('model.layers.1.self_attn.o_proj.bias')).toBe(false);
    expect(qwen.get('model.embed_tokens.weight')!.shape).toEqual([208, 64]);
    const gpt2 = await readCheckpoint(model('tiny-gpt2').dir);
    expect(gpt2.get('h.1.attn.c_attn.weight')!.shape).toEqual([64, 192]);
    expect(gpt2.get('h.0.mlp.c_proj.weight')!.shape).toEqual([256, 64]);
    expect([...gpt2.keys()].filter((n) => !n.startsWith('h.')).sort()).toEqual(['ln_f.bias', 'ln_f.weight', 'wpe.weight', 'wte.weight']);
    for (const m of set.models.filter((x) => x.hasOnnx)) {
      for (const t of (await readCheckpoint(m.dir)).values()) expect(t.dtype).toBe('F32');
    }
  });

  it('store the same values as F16, BF16 and in two shards', async () => {
    const base = await readCheckpoint(model('tiny-llama').dir);
    for (const name of VARIANT_MODELS) {
      const m = model(name);
      const tensors = await readCheckpoint(m.dir);
      expect([...tensors.keys()].sort()).toEqual([...base.keys()].sort());
      for (const [n, t] of tensors) {
        expect(t.dtype).toBe(m.dtype);
        expect(t.shape).toEqual(base.get(n)!.shape);
        expect(t.values).toEqual(base.get(n)!.values);
      }
      expect(new Set([...tensors.values()].map((t) => t.file)).size).toBe(m.shards);
      expect(m.golden).toEqual(model('tiny-llama').golden);
    }
    const index = JSON.parse(await readFile(join(model('tiny-llama-sharded').dir, 'model.safetensors.index.json'), 'utf8'));
    expect(Object.keys(index.weight_map).sort()).toEqual([...base.keys()].sort());
  });

  it('agree on special token ids across config, generation config and tokenizer', async () => {
    for (const m of set.models) {
      const read = async (f: string) => JSON.parse(await readFile(join(m.dir, f), 'utf8'));
      const [config, gen, tok, tokConfig] = await Promise.all(['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'].map(read));
      const vocab = tok.model.vocab as Record<string, number>;
      const id = (t: string | null) => (t === null ? null : vocab[t]);
      expect(config.eos_token_id).toBe(id(tokConfig.eos_token));
      expect([gen.eos_token_id].flat()).toEqual(m.eosIds);
      expect(m.eosIds[0]).toBe(config.eos_token_id);
      expect(config.bos_token_id ?? null).toBe(id(tokConfig.bos_token));
      expect(gen.bos_token_id ?? null).toBe(m.bosId);
      expect(config.pad_token_id ?? null).toBe(id(tokConfig.pad_token));
      expect(gen.pad_token_id ?? null).toBe(m.padId);
      expect(Object.keys(vocab)).toHaveLength(m.tokenizerSize);
      expect(m.tokenizerSize).toBeLessThanOrEqual(config.vocab_size ?? 0);
    }
  });

  it('are generated once: a second call keeps the files', async () => {
    const file = join(model('tiny-gpt2').dir, 'model.safetensors');
    const before = (await stat(file)).mtimeMs;
    const again = await generateFixtures(FIXTURE_DIR);
    expect(again.stamp).toBe(set.stamp);
    expect((await stat(file)).mtimeMs).toBe(before);
  });
});
