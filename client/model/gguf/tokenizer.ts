// The tokenizer a GGUF file carries in its metadata, rebuilt as the Hugging Face tokenizer.json and
// tokenizer_config.json the original model shipped, so a GGUF checkpoint tokenizes through the same
// transformers.js path (Tokenizer.fromFiles) as a safetensors one and gives the same ids.
import { AigridError } from '../../../protocol/errors.ts';

export interface TokenizerFiles {
  json: Record<string, unknown>;
  config: Record<string, unknown>;
}

/** More entries than any real vocabulary has: past it the file is not trusted to be sane. */
const MAX_ENTRIES = 1_000_000;

// Token types of llama.cpp (SentencePiece's numbering).
const UNKNOWN = 2;
const CONTROL = 3;
const USER_DEFINED = 4;
const BYTE = 6;

const SPACE_MARK = '\u2581';

type Meta = Record<string, unknown>;
type Pair = [string, string];

export function tokenizerFilesFromGguf(metadata: Record<string, unknown>): TokenizerFiles {
  if (metadata === null || typeof metadata !== 'object') throw corrupt('the GGUF metadata is not an object');
  const model = stringKey(metadata, 'tokenizer.ggml.model');
  if (model === undefined) throw corrupt('tokenizer.ggml.model is missing');
  if (model !== 'gpt2' && model !== 'llama') {
    throw new AigridError('ERR_UNSUPPORTED_MODEL', `tokenizer.ggml.model '${model.slice(0, 40)}' is not supported (gpt2 and llama are)`);
  }
  const vocab = readVocab(metadata);
  return model === 'gpt2' ? byteLevelFiles(metadata, vocab) : sentencePieceFiles(metadata, vocab);
}

// ---- the vocabulary every model type has ----

interface Vocab {
  tokens: string[];
  types: number[] | null;
  scores: number[] | null;
  ids: Map<string, number>;
}

function readVocab(meta: Meta): Vocab {
  const tokens = stringArray(meta, 'tokenizer.ggml.tokens');
  if (tokens === undefined) throw corrupt('tokenizer.ggml.tokens is missing');
  if (tokens.length === 0) throw corrupt('tokenizer.ggml.tokens is empty');
  const types = numberArray(meta, 'tokenizer.ggml.token_type', tokens.length) ?? null;
  types?.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t > BYTE) throw corrupt(`tokenizer.ggml.token_type[${i}] is ${t}, not a token type 0..6`);
  });
  const scores = numberArray(meta, 'tokenizer.ggml.scores', tokens.length) ?? null;
  scores?.forEach((s, i) => {
    if (Number.isNaN(s)) throw corrupt(`tokenizer.ggml.scores[${i}] is not a number`);
  });
  // A repeated string keeps its last id, as llama.cpp's and transformers' own lookups do.
  const ids = new Map(tokens.map((t, i) => [t, i]));
  return { tokens, types, scores, ids };
}

/**
 * Vocabulary entries matched in the text before tokenizing, as llama.cpp does: control, unknown and
 * user-defined tokens; a file without token types has only its special ids to go by.
 */
function addedTokens(vocab: Vocab, specials: Specials): Record<string, unknown>[] {
  const entry = (id: number, special: boolean) => ({
    id, content: vocab.tokens[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special,
  });
  if (vocab.types === null) {
    return [...new Set(Object.values(specials))].sort((a, b) => a - b).map((id) => entry(id, true));
  }
  const out: Record<string, unknown>[] = [];
  vocab.types.forEach((type, id) => {
    if (type === CONTROL || type === UNKNOWN || type === USER_DEFINED) out.push(entry(id, type !== USER_DEFINED));
  });
  return out;
}

function bpeModel(vocab: Vocab, merges: Pair[], extra: Record<string, unknown>): Record<string, unknown> {
  return {
    type: 'BPE',
    dropout: null,
    ...extra,
    vocab: Object.fromEntries(vocab.tokens.map((t, i) => [t, i])),
    merges,
  };
}

// ---- byte-level BPE (tokenizer.ggml.model = gpt2) ----

const GPT2_SPLIT = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`;
const LLAMA3_SPLIT = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const QWEN2_SPLIT = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

const split = (regex: string) => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });
const byteLevel = (useRegex: boolean) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });

interface PreTokenizerSpec {
  normalizer: Record<string, unknown> | null;
  preTokenizer: Record<string, unknown>;
  /** Whether a prompt starts with BOS when the file does not say (llama.cpp's default for this pre-tokenizer). */
  addBos: boolean;
  ignoreMerges: boolean;
  cleanUpSpaces: boolean;
  tokenizerClass: string;
}

// What the original tokenizer.json of each family does, for the pre-tokenizer names llama.cpp writes.
const LLAMA3: PreTokenizerSpec = {
  normalizer: null,
  preTokenizer: { type: 'Sequence', pretokenizers: [split(LLAMA3_SPLIT), byteLevel(false)] },
  addBos: true, ignoreMerges: true, cleanUpSpaces: true, tokenizerClass: 'PreTrainedTokenizerFast',
};
const QWEN2: PreTokenizerSpec = {
  normalizer: { type: 'NFC' },
  preTokenizer: { type: 'Sequence', pretokenizers: [split(QWEN2_SPLIT), byteLevel(false)] },
  addBos: false, ignoreMerges: false, cleanUpSpaces: false, tokenizerClass: 'Qwen2Tokenizer',
};
const GPT2: PreTokenizerSpec = {
  normalizer: null, preTokenizer: byteLevel(true),
  addBos: false, ignoreMerges: false, cleanUpSpaces: true, tokenizerClass: 'GPT2Tokenizer',
};
const PRE_TOKENIZERS: Record<string, PreTokenizerSpec> = {
  'gpt-2': GPT2,
  'phi-2': GPT2,
  'llama-bpe': LLAMA3,
  'llama3': LLAMA3,
  'llama-v3': LLAMA3,
  'qwen2': QWEN2,
  'deepseek-r1-qwen': QWEN2,
  smollm: {
    normalizer: null,
    preTokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(true)] },
    addBos: false, ignoreMerges: false, cleanUpSpaces: false, tokenizerClass: 'GPT2Tokenizer',
  },
  // llama.cpp's fallback: its own chain of splits, applied one after the other.
  default: {
    normalizer: null,
    preTokenizer: {
      type: 'Sequence',
      pretokenizers: [
        split(String.raw`[\p{P}\$\+<=>\^~\|]+`), split(GPT2_SPLIT), split(String.raw`\p{N}+`), split('[0-9][0-9][0-9]'),
        byteLevel(false),
      ],
    },
    addBos: false, ignoreMerges: false, cleanUpSpaces: true, tokenizerClass: 'GPT2Tokenizer',
  },
};

function byteLevelFiles(meta: Meta, vocab: Vocab): TokenizerFiles {
  // Files written before llama.cpp named pre-tokenizers have none; llama.cpp then uses its default.
  const pre = stringKey(meta, 'tokenizer.ggml.pre') ?? 'default';
  const spec = Object.hasOwn(PRE_TOKENIZERS, pre) ? PRE_TOKENIZERS[pre] : undefined;
  if (spec === undefined) {
    throw new AigridError('ERR_UNSUPPORTED_MODEL', `the GGUF pre-tokenizer '${pre.slice(0, 40)}' (tokenizer.ggml.pre) is not supported`);
  }
  const raw = stringArray(meta, 'tokenizer.ggml.merges');
  if (raw === undefined) throw corrupt('tokenizer.ggml.merges is missing; a gpt2 tokenizer needs it');
  const merges = parseMerges(raw, vocab);
  const specials = readSpecials(meta, vocab, {});
  const level = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const template = postProcessor(meta, vocab, specials, spec.addBos);
  return {
    json: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: addedTokens(vocab, specials),
      normalizer: spec.normalizer,
      pre_tokenizer: spec.preTokenizer,
      post_processor: template === null ? level : { type: 'Sequence', processors: [level, template] },
      decoder: level,
      // Every byte has a token, so nothing is unknown: the originals name no unk_token here.
      model: bpeModel(vocab, merges, {
        unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false,
        ignore_merges: spec.ignoreMerges,
      }),
    },
    config: tokenizerConfig(meta, vocab, specials, spec.cleanUpSpaces, spec.tokenizerClass, template),
  };
}

/** "a b" strings, split at the first space after the first character as llama.cpp does. */
function parseMerges(raw: string[], vocab: Vocab): Pair[] {
  return raw.map((merge, i) => {
    const at = merge.indexOf(' ', 1);
    if (at < 0) throw corrupt(`tokenizer.ggml.merges[${i}] is not two tokens separated by a space`);
    const pair: Pair = [merge.slice(0, at), merge.slice(at + 1)];
    for (const part of pair) {
      if (!vocab.ids.has(part)) throw corrupt(`tokenizer.ggml.merges[${i}] names '${part.slice(0, 40)}', which is not in tokenizer.ggml.tokens`);
    }
    return pair;
  });
}

// ---- SentencePiece BPE (tokenizer.ggml.model = llama) ----

function sentencePieceFiles(meta: Meta, vocab: Vocab): TokenizerFiles {
  const raw = stringArray(meta, 'tokenizer.ggml.merges');
  let merges: Pair[];
  if (raw !== undefined) merges = parseMerges(raw, vocab);
  else if (vocab.scores !== null) merges = mergesFromScores(vocab, vocab.scores);
  else throw corrupt('tokenizer.ggml.scores is missing; a llama tokenizer without merges needs it');

  // llama.cpp's defaults for a SentencePiece vocabulary when the file names no special tokens.
  const specials = readSpecials(meta, vocab, { bos: 1, eos: 2, unk: 0 });
  const prefixSpace = boolKey(meta, 'tokenizer.ggml.add_space_prefix') ?? true;
  const replace = { type: 'Replace', pattern: { String: ' ' }, content: SPACE_MARK };
  const decoders: Record<string, unknown>[] = [
    { type: 'Replace', pattern: { String: SPACE_MARK }, content: ' ' },
    { type: 'ByteFallback' },
    { type: 'Fuse' },
  ];
  if (prefixSpace) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });
  const template = postProcessor(meta, vocab, specials, true);
  const arch = architecture(meta) ?? '';
  return {
    json: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: addedTokens(vocab, specials),
      // llama.cpp puts the space before every run of text, also after a special token: the
      // normalizer (not a first-section-only Metaspace) does the same.
      normalizer: prefixSpace ? { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SPACE_MARK }, replace] } : replace,
      pre_tokenizer: null,
      post_processor: template ?? { type: 'TemplateProcessing', single: [seq('A', 0)], pair: [seq('A', 0), seq('B', 1)], special_tokens: {} },
      decoder: { type: 'Sequence', decoders },
      model: bpeModel(vocab, merges, {
        unk_token: specials.unk === undefined ? null : vocab.tokens[specials.unk],
        continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true,
      }),
    },
    config: tokenizerConfig(meta, vocab, specials, false, arch.startsWith('gemma') ? 'GemmaTokenizer' : 'LlamaTokenizer', template),
  };
}

/**
 * The merges a SentencePiece BPE vocabulary implies: every split of a piece into two pieces, the
 * pieces with the higher score first. Ties (a file whose scores are all equal) fall back to the
 * vocabulary order, which is the training order.
 */
function mergesFromScores(vocab: Vocab, scores: number[]): Pair[] {
  const scoreOf = (token: string) => scores[vocab.ids.get(token)!]!;
  const idOf = (token: string) => vocab.ids.get(token)!;
  const found: { pair: Pair; score: number }[] = [];
  const seen = new Set<string>();
  for (const token of vocab.tokens) {
    if (seen.has(token)) continue;
    seen.add(token);
    const score = scoreOf(token);
    const local: Pair[] = [];
    // Split between code points, never inside a surrogate pair.
    for (let at = codePointEnd(token, 0); at < token.length; at = codePointEnd(token, at)) {
      const left = token.slice(0, at);
      const right = token.slice(at);
      if (vocab.ids.has(left) && vocab.ids.has(right)) local.push([left, right]);
    }
    local.sort((a, b) =>
      descending(scoreOf(a[0]), scoreOf(b[0])) || descending(scoreOf(a[1]), scoreOf(b[1]))
      || idOf(a[0]) - idOf(b[0]) || idOf(a[1]) - idOf(b[1]));
    for (const pair of local) found.push({ pair, score });
  }
  found.sort((a, b) => descending(a.score, b.score));
  return found.map((m) => m.pair);
}

/** Comparator for a stable sort, higher first; also right for infinite scores. */
function descending(a: number, b: number): number {
  return a === b ? 0 : a > b ? -1 : 1;
}

function codePointEnd(text: string, at: number): number {
  return at + ((text.codePointAt(at) ?? 0) > 0xffff ? 2 : 1);
}

// ---- special tokens, post-processor and tokenizer_config.json ----

const SPECIAL_KEYS = {
  bos: 'tokenizer.ggml.bos_token_id',
  eos: 'tokenizer.ggml.eos_token_id',
  unk: 'tokenizer.ggml.unknown_token_id',
  sep: 'tokenizer.ggml.seperator_token_id',
  pad: 'tokenizer.ggml.padding_token_id',
  cls: 'tokenizer.ggml.cls_token_id',
  mask: 'tokenizer.ggml.mask_token_id',
} as const;

type SpecialName = keyof typeof SPECIAL_KEYS;
type Specials = Partial<Record<SpecialName, number>>;

function readSpecials(meta: Meta, vocab: Vocab, defaults: Specials): Specials {
  const out: Specials = {};
  for (const [name, key] of Object.entries(SPECIAL_KEYS) as [SpecialName, string][]) {
    const id = intKey(meta, key) ?? defaults[name];
    if (id === undefined) continue;
    if (id < 0 || id >= vocab.tokens.length) {
      if (defaults[name] === id && !Object.hasOwn(meta, key)) continue;
      throw corrupt(`${key} is ${id}, outside the ${vocab.tokens.length} tokens`);
    }
    out[name] = id;
  }
  return out;
}

const seq = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } });
const special = (token: string, typeId: number) => ({ SpecialToken: { id: token, type_id: typeId } });

/** BOS before and EOS after each sequence, as add_bos_token / add_eos_token ask; null when neither. */
function postProcessor(meta: Meta, vocab: Vocab, specials: Specials, addBosDefault: boolean): Record<string, unknown> | null {
  const addBos = boolKey(meta, 'tokenizer.ggml.add_bos_token') ?? addBosDefault;
  const addEos = boolKey(meta, 'tokenizer.ggml.add_eos_token') ?? false;
  if (!addBos && !addEos) return null;
  const wrap = (name: 'bos' | 'eos', wanted: boolean) => {
    if (!wanted) return null;
    const id = specials[name];
    if (id === undefined) throw corrupt(`tokenizer.ggml.add_${name}_token is set but ${SPECIAL_KEYS[name]} is missing`);
    return vocab.tokens[id]!;
  };
  const bos = wrap('bos', addBos);
  const eos = wrap('eos', addEos);
  const around = (id: 'A' | 'B', typeId: number) => [
    ...(bos === null ? [] : [special(bos, typeId)]), seq(id, typeId), ...(eos === null ? [] : [special(eos, typeId)]),
  ];
  const specialTokens: Record<string, unknown> = {};
  for (const token of [bos, eos]) {
    if (token !== null) specialTokens[token] = { id: token, ids: [vocab.ids.get(token)], tokens: [token] };
  }
  return { type: 'TemplateProcessing', single: around('A', 0), pair: [...around('A', 0), ...around('B', 1)], special_tokens: specialTokens };
}

function tokenizerConfig(
  meta: Meta, vocab: Vocab, specials: Specials, cleanUpSpaces: boolean, tokenizerClass: string,
  template: Record<string, unknown> | null,
): Record<string, unknown> {
  const singles = template === null ? [] : (template.single as { SpecialToken?: unknown }[]);
  const config: Record<string, unknown> = {
    tokenizer_class: tokenizerClass,
    add_bos_token: singles[0]?.SpecialToken !== undefined,
    add_eos_token: singles.at(-1)?.SpecialToken !== undefined,
    clean_up_tokenization_spaces: cleanUpSpaces,
  };
  for (const name of Object.keys(SPECIAL_KEYS) as SpecialName[]) {
    const id = specials[name];
    if (id !== undefined) config[`${name}_token`] = vocab.tokens[id];
  }
  const chatTemplate = readChatTemplate(meta);
  if (chatTemplate !== undefined) config.chat_template = chatTemplate;
  const context = contextLength(meta);
  if (context !== undefined) config.model_max_length = context;
  return config;
}

/** The default template, or the list of named ones transformers.js also takes when the file has several. */
function readChatTemplate(meta: Meta): string | { name: string; template: string }[] | undefined {
  const main = stringKey(meta, 'tokenizer.chat_template');
  const names = stringArray(meta, 'tokenizer.chat_templates');
  if (names === undefined || names.length === 0) return main;
  const list = main === undefined ? [] : [{ name: 'default', template: main }];
  for (const name of names) {
    const key = `tokenizer.chat_template.${name}`;
    const template = stringKey(meta, key);
    if (template === undefined) throw corrupt(`${key} is missing though tokenizer.chat_templates names it`);
    if (name !== 'default' || main === undefined) list.push({ name, template });
  }
  return list;
}

/** The context length is the model's business: a malformed one only costs the hint. */
function contextLength(meta: Meta): number | undefined {
  const arch = architecture(meta);
  if (arch === undefined) return undefined;
  const value = toInt(own(meta, `${arch}.context_length`));
  return value !== undefined && value > 0 ? value : undefined;
}

// ---- typed reads that refuse what a parser would not have produced ----

/** Not a tokenizer key: only a hint here, so a malformed one is ignored rather than refused. */
function architecture(meta: Meta): string | undefined {
  const value = own(meta, 'general.architecture');
  return typeof value === 'string' ? value : undefined;
}

function own(meta: Meta, key: string): unknown {
  return Object.hasOwn(meta, key) ? meta[key] : undefined;
}

function corrupt(message: string): AigridError {
  return new AigridError('ERR_CHECKPOINT_CORRUPT', `GGUF tokenizer: ${message}`);
}

function stringKey(meta: Meta, key: string): string | undefined {
  const value = own(meta, key);
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw corrupt(`${key} is not a string`);
  return value;
}

function boolKey(meta: Meta, key: string): boolean | undefined {
  const value = own(meta, key);
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw corrupt(`${key} is not a boolean`);
  return value;
}

function toInt(value: unknown): number | undefined {
  if (typeof value === 'bigint') return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
  return typeof value === 'number' && Number.isSafeInteger(value) ? value : undefined;
}

function intKey(meta: Meta, key: string): number | undefined {
  const value = own(meta, key);
  if (value === undefined) return undefined;
  const int = toInt(value);
  if (int === undefined) throw corrupt(`${key} is not an integer`);
  return int;
}

function array(meta: Meta, key: string, length?: number): unknown[] | undefined {
  const value = own(meta, key);
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw corrupt(`${key} is not an array`);
  if (value.length > MAX_ENTRIES) throw corrupt(`${key} has ${value.length} entries, more than ${MAX_ENTRIES}`);
  if (length !== undefined && value.length !== length) {
    throw corrupt(`${key} has ${value.length} entries but tokenizer.ggml.tokens has ${length}`);
  }
  return value;
}

// Index loops, not forEach/map: those skip the holes of a sparse array.
function stringArray(meta: Meta, key: string): string[] | undefined {
  const value = array(meta, key);
  if (value === undefined) return undefined;
  for (let i = 0; i < value.length; i++) {
    if (typeof value[i] !== 'string') throw corrupt(`${key}[${i}] is not a string`);
  }
  return value as string[];
}

function numberArray(meta: Meta, key: string, length: number): number[] | undefined {
  const value = array(meta, key, length);
  if (value === undefined) return undefined;
  const out = new Array<number>(value.length);
  for (let i = 0; i < value.length; i++) {
    const v = value[i];
    const n = typeof v === 'bigint' ? toInt(v) : v;
    if (typeof n !== 'number') throw corrupt(`${key}[${i}] is not a number`);
    out[i] = n;
  }
  return out;
}
