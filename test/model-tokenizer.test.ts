// Tokenizer and sampler of the client side: the same ids as @huggingface/transformers' own
// AutoTokenizer path, the chat template, and the sampling rules.
import { AutoTokenizer, env } from '@huggingface/transformers';
import { beforeAll, describe, expect, it } from 'vitest';
import { AigridError } from '../protocol/index.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import { applyRepetitionPenalty, checkSampling, sampleNext } from '../client/model/sampler.ts';
import { Tokenizer } from '../client/model/tokenizer.ts';
import { BASE_MODELS, FIXTURE_DIR, fixtures, modelDir, type FixtureSet } from './fixtures/index.ts';

let set: FixtureSet;

beforeAll(async () => {
  set = await fixtures();
  env.allowRemoteModels = false;
  env.localModelPath = FIXTURE_DIR;
});

describe('tokenizer', () => {
  for (const name of BASE_MODELS) {
    it(`${name}: encodes the golden prompts, decodes them back, renders the chat template`, async () => {
      const model = set.models.find((m) => m.name === name)!;
      const ours = await Tokenizer.fromReader(await openCheckpointNode(modelDir(name)));
      const theirs = await AutoTokenizer.from_pretrained(name);
      for (const g of model.golden) {
        expect(ours.encode(g.prompt)).toEqual(g.ids);
        expect(ours.decode(g.ids)).toBe(theirs.decode(g.ids, { skip_special_tokens: true }));
      }
      const messages = [
        { role: 'system', content: 'you are a little robot' },
        { role: 'user', content: 'hello world' },
      ];
      const expected = theirs.apply_chat_template(messages, { tokenize: true, add_generation_prompt: true, return_tensor: false, return_dict: false });
      expect(ours.encodeChat(messages)).toEqual(expected);
      expect(ours.renderChat(messages)).toBe(theirs.apply_chat_template(messages, { tokenize: false, add_generation_prompt: true }));
    });
  }
});

describe('sampler', () => {
  const logits = Float32Array.from([1, 3, 2.5, -1, 3.2, 0]);

  it('is greedy at temperature 0 and with top-k 1', () => {
    expect(sampleNext(logits, [], 0, { temperature: 0 })).toBe(4);
    expect(sampleNext(logits, [], 7, { temperature: 2, topK: 1, seed: 9 })).toBe(4);
  });

  it('penalizes repeated tokens as Hugging Face does', () => {
    const out = applyRepetitionPenalty(logits, [4, 3, 4], 2);
    expect([...out]).toEqual([1, 3, 2.5, -2, Math.fround(1.6), 0]);
    expect(sampleNext(logits, [4], 0, { temperature: 0, repetitionPenalty: 2 })).toBe(1);
  });

  it('repeats a seeded draw exactly, keeps to the top-k set, and varies with the step', () => {
    const seen = new Set<number>();
    for (let step = 0; step < 200; step++) {
      const a = sampleNext(logits, [], step, { temperature: 1, topK: 3, seed: 42 });
      expect(sampleNext(logits, [], step, { temperature: 1, topK: 3, seed: 42 })).toBe(a);
      expect([1, 2, 4]).toContain(a);
      seen.add(a);
    }
    expect(seen.size).toBe(3);
  });

  it('names bad options and NaN logits', () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return (err as AigridError).code;
      }
      return 'none';
    };
    expect(code(() => checkSampling({ temperature: -1 }))).toBe('ERR_INVALID_ARGUMENT');
    expect(code(() => checkSampling({ topP: 0 }))).toBe('ERR_INVALID_ARGUMENT');
    expect(code(() => checkSampling({ topK: 1.5 }))).toBe('ERR_INVALID_ARGUMENT');
    expect(code(() => sampleNext(Float32Array.from([0, NaN]), [], 0, {}))).toBe('ERR_INVALID_ARGUMENT');
  });
});
