// A GGUF file's tokenizer metadata, turned back into tokenizer.json + tokenizer_config.json, must
// tokenize exactly as the model's own files do: the same ids with and without special tokens, the
// same decoded text, the same chat prompt. Hostile metadata is refused with a stable error code.
import { describe, expect, it } from 'vitest';
import { AigridError } from '../protocol/index.ts';
import { tokenizerFilesFromGguf } from '../client/model/gguf/tokenizer.ts';
import { Tokenizer } from '../client/model/tokenizer.ts';
import {
  BYTE_LEVEL_MERGED, SENTENCE_PIECES, byteLevelTokenizer, ggufTokenizerMetadata, sentencePieceTokenizer,
  type ByteLevelFlavor, type TokenizerFiles,
} from './fixtures/bpe-tokenizers.ts';

const TEXTS = [
  'Hello world, the quick brown fox jumps over the lazy dog.',
  'Once upon a time a little robot wanted to learn how to paint the sky',
  '   leading spaces',
  'trailing spaces   ',
  'multiple     spaces  inside   words',
  ' ',
  'line one\nline two\n\n\tindented\ttabs\r\nwindows line\n',
  'digits 0123456789 and 3.14159 and 1,000,000 and 2024',
  "punctuation!? (brackets) [square] {curly} <angle> \"quotes\" 'single' -- ... ;: @#$%^&*",
  'accents: café naïve résumé über niño Ærøskøbing e\u0301',
  'CJK: 日本語のテキスト 中文 한국어',
  'emoji: 😀 👍🏽 🦙 ❤️ done',
  'words outside the corpus: xylophone quixotic zephyr Mississippi',
  "contractions: it's I'M we'll THEY'VE she'd",
  'special <|im_start|>user\nhi<|im_end|> and <|endoftext|> <s> </s> <unk> <pad> <tool_call> inside text',
  '<s>[INST] hello [/INST] world</s>',
];

const MESSAGES = [
  { role: 'system', content: 'you are a little robot' },
  { role: 'user', content: 'hello world, how are you?' },
  { role: 'assistant', content: 'I am fine. 😀' },
  { role: 'user', content: 'paint the sky\nin blue' },
];

function fromGguf(metadata: Record<string, unknown>): Promise<Tokenizer> {
  const { json, config } = tokenizerFilesFromGguf(metadata);
  return Tokenizer.fromFiles(json, config);
}

async function expectSameTokenizer(original: TokenizerFiles, metadata: Record<string, unknown>): Promise<void> {
  const theirs = await Tokenizer.fromFiles(original.json, original.config);
  const ours = await fromGguf(metadata);
  for (const text of TEXTS) {
    const ids = theirs.encode(text);
    expect(ours.encode(text), text).toEqual(ids);
    expect(ours.encode(text, false), text).toEqual(theirs.encode(text, false));
    expect(ours.decode(ids), text).toBe(theirs.decode(ids));
    expect(ours.decode(ids, false), text).toBe(theirs.decode(ids, false));
  }
  expect(ours.hasChatTemplate).toBe(true);
  expect(ours.renderChat(MESSAGES)).toBe(theirs.renderChat(MESSAGES));
  expect(ours.encodeChat(MESSAGES)).toEqual(theirs.encodeChat(MESSAGES));
}

const FLAVORS: ByteLevelFlavor[] = ['gpt-2', 'llama-bpe', 'qwen2', 'smollm'];
const byteLevel = new Map(FLAVORS.map((f) => [f, byteLevelTokenizer(f)]));
const sentencePiece = sentencePieceTokenizer();

describe('byte-level BPE (tokenizer.ggml.model gpt2)', () => {
  for (const flavor of FLAVORS) {
    it(`${flavor}: the GGUF metadata tokenizes as the original files do`, async () => {
      const files = byteLevel.get(flavor)!;
      const metadata = ggufTokenizerMetadata(files.json, files.config);
      expect(metadata['tokenizer.ggml.pre']).toBe(flavor);
      const { json } = tokenizerFilesFromGguf(metadata);
      const model = json.model as { vocab: unknown; merges: unknown };
      const originalModel = files.json.model as { vocab: Record<string, number>; merges: unknown };
      expect(model.merges).toEqual(originalModel.merges);
      expect(model.vocab).toEqual(originalModel.vocab);
      await expectSameTokenizer(files, metadata);
    });
  }

  it('gives the ids worked out by hand from the fixture layout', async () => {
    // GPT-2's byte order puts '!'..'~' first ('~' = 93, '{' = 90, '7' = 22); the trained tokens
    // follow, then the added ones (or before everything for SmolLM2).
    const specialsAt = 256 + BYTE_LEVEL_MERGED;
    const qwen = await fromGguf(ggufTokenizerMetadata(byteLevel.get('qwen2')!.json, byteLevel.get('qwen2')!.config));
    expect(qwen.encode('~<|im_end|>{')).toEqual([93, specialsAt + 2, 90]);
    const llama = await fromGguf(ggufTokenizerMetadata(byteLevel.get('llama-bpe')!.json, byteLevel.get('llama-bpe')!.config));
    expect(llama.encode('~')).toEqual([specialsAt, 93]);
    expect(llama.encode('~', false)).toEqual([93]);
    const gpt2 = await fromGguf(ggufTokenizerMetadata(byteLevel.get('gpt-2')!.json, byteLevel.get('gpt-2')!.config));
    expect(gpt2.encode('<|endoftext|>~')).toEqual([specialsAt, 93]);
    expect(gpt2.decode([specialsAt, 93], false)).toBe('<|endoftext|>~');
    expect(gpt2.decode([specialsAt, 93])).toBe('~');
    const smol = await fromGguf(ggufTokenizerMetadata(byteLevel.get('smollm')!.json, byteLevel.get('smollm')!.config));
    expect(smol.encode('<|im_start|>77~')).toEqual([1, 4 + 22, 4 + 22, 4 + 93]);
    // A frequent word of the corpus is one trained token.
    const vocab = (byteLevel.get('gpt-2')!.json.model as { vocab: Record<string, number> }).vocab;
    expect(gpt2.encode(' the')).toEqual([vocab['\u0120the']]);
  });

  it('splits digits, merges and adds BOS as each named pre-tokenizer family does', async () => {
    const tokens = ['1', '2', '12', 'a', 'b', 'c', 'ab', 'abc', '<s>'];
    const expected: Record<string, [number[], number[]]> = {
      // "12": digits one by one or together; "abc": Llama 3 takes a whole word the vocabulary has.
      'gpt-2': [[2], [6, 5]],
      'llama-bpe': [[8, 2], [8, 7]],
      qwen2: [[0, 1], [6, 5]],
      smollm: [[0, 1], [6, 5]],
      default: [[2], [6, 5]],
    };
    for (const [pre, [digits, word]] of Object.entries(expected)) {
      const tokenizer = await fromGguf({
        'tokenizer.ggml.model': 'gpt2',
        'tokenizer.ggml.pre': pre,
        'tokenizer.ggml.tokens': tokens,
        'tokenizer.ggml.token_type': [1, 1, 1, 1, 1, 1, 1, 1, 3],
        'tokenizer.ggml.merges': ['1 2', 'a b'],
        'tokenizer.ggml.bos_token_id': 8,
      });
      expect(tokenizer.encode('12'), pre).toEqual(digits);
      expect(tokenizer.encode('abc'), pre).toEqual(word);
    }
  });

  it("splits as llama.cpp's default pre-tokenizer does: punctuation runs, then digits three by three", async () => {
    const tokens = ['1', '2', '3', '4', '5', '12', '34', '123', '45', '+', '='];
    const tokenizer = await fromGguf({
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': 'default',
      'tokenizer.ggml.tokens': tokens,
      'tokenizer.ggml.token_type': tokens.map(() => 1),
      'tokenizer.ggml.merges': ['3 4', '1 2', '12 3', '4 5'],
    });
    // Unsplit, "3 4" would merge first and give 12 34 5.
    expect(tokenizer.encode('12345')).toEqual([7, 8]);
    expect(tokenizer.encode('1+=2')).toEqual([0, 9, 10, 1]);
  });
});

describe('SentencePiece BPE (tokenizer.ggml.model llama)', () => {
  const metadata = ggufTokenizerMetadata(sentencePiece.json, sentencePiece.config);
  // What a GGUF made from tokenizer.model carries instead: SentencePiece's own scores and kinds.
  const withScores = {
    ...metadata,
    'tokenizer.ggml.scores': [...sentencePiece.pieces.map((p) => p.score), -1000],
    'tokenizer.ggml.token_type': [...sentencePiece.pieces.map((p) => p.type), 3],
  };
  const originalMerges = (sentencePiece.json.model as { merges: unknown }).merges;

  it('rebuilds the original merges from the vocabulary, with placeholder or real scores', () => {
    expect(metadata['tokenizer.ggml.merges']).toBeUndefined();
    expect(new Set(metadata['tokenizer.ggml.scores'] as number[])).toEqual(new Set([-1000]));
    for (const meta of [metadata, withScores]) {
      const { json, config } = tokenizerFilesFromGguf(meta);
      expect((json.model as { merges: unknown }).merges).toEqual(originalMerges);
      expect(json.normalizer).toEqual(sentencePiece.json.normalizer);
      expect(json.decoder).toEqual(sentencePiece.json.decoder);
      expect(json.post_processor).toEqual(sentencePiece.json.post_processor);
      expect(config).toMatchObject({
        bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: '<pad>', add_bos_token: true, add_eos_token: false,
        tokenizer_class: 'LlamaTokenizer',
      });
    }
  });

  it('the GGUF metadata tokenizes as the original files do', async () => {
    await expectSameTokenizer(sentencePiece, metadata);
    await expectSameTokenizer(sentencePiece, withScores);
  });

  it('gives the ids worked out by hand from the fixture layout', async () => {
    // <unk> <s> </s>, bytes at 3 + b, three whitespace pieces and the trained ones, then the
    // characters, the most frequent (the word boundary) first.
    const boundary = 3 + 256 + 3 + SENTENCE_PIECES;
    const tokenizer = await fromGguf(metadata);
    expect(tokenizer.encode('\t')).toEqual([1, boundary, 3 + 0x09]);
    expect(tokenizer.encode('😀', false)).toEqual([boundary, 3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80]);
    expect(tokenizer.decode([1, boundary, 3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80, 2])).toBe('😀');
    expect(tokenizer.encode('a  </s>', false).slice(-1)).toEqual([2]);
  });

  it('leaves out the space prefix when the file says so (Gemma)', async () => {
    const { json } = tokenizerFilesFromGguf({ ...metadata, 'tokenizer.ggml.add_space_prefix': false, 'general.architecture': 'gemma' });
    expect(json.normalizer).toEqual({ type: 'Replace', pattern: { String: ' ' }, content: '\u2581' });
    const tokenizer = await fromGguf({ ...metadata, 'tokenizer.ggml.add_space_prefix': false });
    const boundary = 3 + 256 + 3 + SENTENCE_PIECES;
    expect(tokenizer.encode('\t', false)).toEqual([3 + 0x09]);
    expect(tokenizer.encode(' \t', false)).toEqual([boundary, 3 + 0x09]);
  });
});

describe('GGUF tokenizer metadata that is not to be trusted', () => {
  const gpt2 = ggufTokenizerMetadata(byteLevel.get('qwen2')!.json, byteLevel.get('qwen2')!.config);
  const llama = ggufTokenizerMetadata(sentencePiece.json, sentencePiece.config);
  const tokenCount = (gpt2['tokenizer.ggml.tokens'] as string[]).length;

  function refusal(metadata: Record<string, unknown>): AigridError {
    try {
      tokenizerFilesFromGguf(metadata);
    } catch (err) {
      expect(err).toBeInstanceOf(AigridError);
      return err as AigridError;
    }
    throw new Error('the metadata was accepted');
  }

  const expectCorrupt = (metadata: Record<string, unknown>, names: string) => {
    const err = refusal(metadata);
    expect(err.code).toBe('ERR_CHECKPOINT_CORRUPT');
    expect(err.message).toContain(names);
  };

  it('refuses missing and wrong-typed keys, naming them', () => {
    expectCorrupt({}, 'tokenizer.ggml.model');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.model': 7 }, 'tokenizer.ggml.model');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.tokens': undefined }, 'tokenizer.ggml.tokens');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.tokens': 'hello' }, 'tokenizer.ggml.tokens');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.tokens': [] }, 'tokenizer.ggml.tokens');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.tokens': ['a', 3] }, 'tokenizer.ggml.tokens[1]');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.merges': undefined }, 'tokenizer.ggml.merges');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.merges': ['nospace'] }, 'tokenizer.ggml.merges[0]');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.merges': [{}] }, 'tokenizer.ggml.merges[0]');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.pre': ['qwen2'] }, 'tokenizer.ggml.pre');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.eos_token_id': '5' }, 'tokenizer.ggml.eos_token_id');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.eos_token_id': 1.5 }, 'tokenizer.ggml.eos_token_id');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.add_bos_token': 'yes' }, 'tokenizer.ggml.add_bos_token');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.add_bos_token': true }, 'tokenizer.ggml.bos_token_id');
    expectCorrupt({ ...gpt2, 'tokenizer.chat_template': 42 }, 'tokenizer.chat_template');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.token_type': [...Array(tokenCount - 1)].map(() => 1).concat([9]) }, 'tokenizer.ggml.token_type[');
    expectCorrupt({ ...llama, 'tokenizer.ggml.scores': undefined }, 'tokenizer.ggml.scores');
    expectCorrupt({ ...llama, 'tokenizer.ggml.scores': (llama['tokenizer.ggml.scores'] as number[]).map(() => 'x') }, 'tokenizer.ggml.scores[0]');
  });

  it('refuses arrays whose lengths disagree and ids out of range', () => {
    const scores = llama['tokenizer.ggml.scores'] as number[];
    const types = llama['tokenizer.ggml.token_type'] as number[];
    expectCorrupt({ ...llama, 'tokenizer.ggml.scores': scores.slice(1) }, 'tokenizer.ggml.scores');
    expectCorrupt({ ...llama, 'tokenizer.ggml.token_type': [...types, 1] }, 'tokenizer.ggml.token_type');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.scores': [0, 0] }, 'tokenizer.ggml.scores');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.eos_token_id': tokenCount }, 'tokenizer.ggml.eos_token_id');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.padding_token_id': -1 }, 'tokenizer.ggml.padding_token_id');
    expectCorrupt({ ...llama, 'tokenizer.ggml.bos_token_id': 2n ** 40n }, 'tokenizer.ggml.bos_token_id');
    expectCorrupt({ ...llama, 'tokenizer.ggml.unknown_token_id': 2n ** 70n }, 'tokenizer.ggml.unknown_token_id');
  });

  it('refuses more than a million tokens or merges, and merges naming tokens that do not exist', () => {
    const many = new Array<string>(1_000_001).fill('a');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.tokens': many }, 'tokenizer.ggml.tokens');
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.merges': many }, 'tokenizer.ggml.merges');
    const merges = gpt2['tokenizer.ggml.merges'] as string[];
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.merges': [merges[0], 'Ġnot-a-token x'] }, "tokenizer.ggml.merges[1] names 'Ġnot-a-token'");
    expectCorrupt({ ...gpt2, 'tokenizer.ggml.merges': [merges[0], 'x Ġnot-a-token'] }, "tokenizer.ggml.merges[1] names 'Ġnot-a-token'");
    expectCorrupt({ ...llama, 'tokenizer.ggml.merges': ['\u2581 zz'] }, 'tokenizer.ggml.merges[0]');
  });

  it('refuses tokenizer models and pre-tokenizers it does not know as unsupported, naming them', () => {
    const model = refusal({ ...gpt2, 'tokenizer.ggml.model': 't5' });
    expect(model.code).toBe('ERR_UNSUPPORTED_MODEL');
    expect(model.message).toContain('t5');
    const pre = refusal({ ...gpt2, 'tokenizer.ggml.pre': 'deepseek-coder' });
    expect(pre.code).toBe('ERR_UNSUPPORTED_MODEL');
    expect(pre.message).toContain('deepseek-coder');
    expect(refusal({ ...gpt2, 'tokenizer.ggml.pre': '__proto__' }).code).toBe('ERR_UNSUPPORTED_MODEL');
  });

  it('never fails with anything but an AigridError, whatever a key holds', () => {
    const small = {
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': 'gpt-2',
      'tokenizer.ggml.tokens': ['a', 'b', 'ab', '<|x|>'],
      'tokenizer.ggml.token_type': [1, 1, 1, 3],
      'tokenizer.ggml.scores': [0, 0, -1, 0],
      'tokenizer.ggml.merges': ['a b'],
      'tokenizer.ggml.bos_token_id': 3,
      'tokenizer.ggml.eos_token_id': 3,
      'tokenizer.ggml.add_bos_token': true,
      'tokenizer.chat_template': '{{ bos_token }}',
      'tokenizer.chat_templates': ['tool_use'],
      'tokenizer.chat_template.tool_use': 'x',
      'general.architecture': 'qwen2',
      'qwen2.context_length': 4096,
    };
    const values: unknown[] = [
      undefined, null, true, 0, -1, 3, 1.5, NaN, Infinity, 2n ** 64n, '', 'llama', 'a b', [], [null], [1, 2], ['a'],
      [NaN, NaN, NaN, NaN], ['x', 'y', 'z', 'w'], new Array(4), [1, , 3, 0], {}, { length: 4 }, () => 1,
    ];
    let accepted = 0;
    for (const model of ['gpt2', 'llama']) {
      for (const key of Object.keys(small)) {
        for (const value of values) {
          try {
            tokenizerFilesFromGguf({ ...small, 'tokenizer.ggml.model': model, [key]: value });
            accepted++;
          } catch (err) {
            expect(err, `${model} ${key} = ${String(value)}`).toBeInstanceOf(AigridError);
          }
        }
      }
    }
    expect(accepted).toBeGreaterThan(0);
    expect(() => tokenizerFilesFromGguf(null as unknown as Record<string, unknown>)).toThrow(AigridError);
  });

  it('carries named chat templates and the context length', () => {
    const { config } = tokenizerFilesFromGguf({
      ...gpt2,
      'tokenizer.chat_templates': ['tool_use'],
      'tokenizer.chat_template.tool_use': '{{ tools }}',
      'general.architecture': 'qwen2',
      'qwen2.context_length': 32768n,
    });
    expect(config.chat_template).toEqual([
      { name: 'default', template: gpt2['tokenizer.chat_template'] },
      { name: 'tool_use', template: '{{ tools }}' },
    ]);
    expect(config.model_max_length).toBe(32768);
  });
});
