// Random LLaMA-architecture GGUF files of given shapes for the benchmarks, laid out as llama.cpp's
// converter and llama-quantize lay them out (names, order and hyperparameters from gguf-arch.ts,
// per-tensor types and metadata order from gguf-writer.ts), with a synthetic byte-level BPE
// tokenizer llama.cpp loads. Blocks are made directly in their quantized form (uniform random
// quants, scales chosen so each weight has a standard deviation of about 0.02, 0.1 for the
// embedding and LM head) and streamed to disk tensor by tensor, so an 8B file never sits in memory. Files are cached under
// test/.fixtures/bench/, keyed by shape, type and seed.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { f32ToF16 } from '../../kernels/quant.ts';
import { byteChars } from '../fixtures/bpe-tokenizers.ts';
import {
  GGML_TYPE, GGUF_DEFAULT_ALIGNMENT, LLAMA_FILE_TYPE, encodeGgufHeader, ggmlByteSize, ggufTensorsFromCheckpoint, ggufTypeFor, tokenizerKvs,
  type GgufKv, type GgufTypeContext,
} from '../fixtures/gguf-writer.ts';

export const BENCH_DIR = fileURLToPath(new URL('../.fixtures/bench/', import.meta.url));

export interface LlamaShape {
  /** Names the file (with a hash of every field, so two shapes never share one). */
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  vocab: number;
  tied: boolean;
  ropeTheta: number;
  /** Llama 3.1 / 3.2 rope scaling (the converter writes it as a rope_freqs tensor). */
  llama3Rope?: boolean;
  contextLength: number;
  /** Written as head_dim in the config, as Llama 3.2's config.json has it. */
  headDim?: number;
  /** tokenizer.ggml.pre: 'smollm' or 'llama-bpe'. */
  pre: string;
}

export type RandomGgufType = 'Q8_0' | 'Q4_K_M';

/** Bumped whenever the bytes written for the same key change. */
const GENERATOR_VERSION = 3;
/** Standard deviation of the layers' weights. */
const SIGMA = 0.02;
/**
 * The token embedding and LM head spread wider, so logits do too (std of a few units, as trained
 * models have): greedy choices are then rarely near-ties, and two runtimes' tokens can be compared.
 */
const HEAD_SIGMA = 0.1;
const isHead = (name: string) => name === 'token_embd.weight' || name === 'output.weight';
const CHUNK_BYTES = 8 << 20;
const SPECIALS = ['<|begin_of_text|>', '<|end_of_text|>'];

/** The config.json the converter would read. */
function hfConfig(s: LlamaShape): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: s.hidden, intermediate_size: s.intermediate,
    num_attention_heads: s.heads, num_key_value_heads: s.kvHeads, num_hidden_layers: s.layers, vocab_size: s.vocab,
    max_position_embeddings: s.contextLength, rms_norm_eps: 1e-5, rope_theta: s.ropeTheta, tie_word_embeddings: s.tied,
    ...(s.headDim ? { head_dim: s.headDim } : {}),
    ...(s.llama3Rope ? { rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } } : {}),
  };
}

/** The checkpoint's tensors and PyTorch shapes, in a safetensors file's (sorted) key order. */
function hfTensors(s: LlamaShape): [string, number[]][] {
  const D = s.headDim ?? s.hidden / s.heads;
  const H = s.hidden;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [s.vocab, H]], ['model.norm.weight', [H]]];
  if (!s.tied) out.push(['lm_head.weight', [s.vocab, H]]);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      [`${p}input_layernorm.weight`, [H]], [`${p}post_attention_layernorm.weight`, [H]],
      [`${p}mlp.gate_proj.weight`, [s.intermediate, H]], [`${p}mlp.up_proj.weight`, [s.intermediate, H]], [`${p}mlp.down_proj.weight`, [H, s.intermediate]],
      [`${p}self_attn.q_proj.weight`, [s.heads * D, H]], [`${p}self_attn.k_proj.weight`, [s.kvHeads * D, H]],
      [`${p}self_attn.v_proj.weight`, [s.kvHeads * D, H]], [`${p}self_attn.o_proj.weight`, [H, s.heads * D]],
    );
  }
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

interface PlannedTensor {
  name: string;
  /** ggml order (innermost first). */
  shape: number[];
  type: number;
  /** F32 values the converter computed (rope_freqs); other F32 tensors are norms, all ones. */
  values?: Float32Array;
}

/**
 * The converter's names, order and metadata: each tensor goes through ggufTensorsFromCheckpoint as
 * a zero-width probe (its name is all that is read back), so no weight values are ever made.
 */
function plan(s: LlamaShape, preset: RandomGgufType): { metadata: GgufKv[]; tensors: PlannedTensor[] } {
  const list = hfTensors(s);
  const probes = new Map(list.map(([name, shape]) => [name, { shape: [shape[0]!, 0], data: new Float32Array(0) }]));
  const model = ggufTensorsFromCheckpoint(hfConfig(s), probes, { name: s.name });
  const extra = model.tensors.length - list.length; // rope_freqs, emitted first
  if (extra < 0 || extra > 1) throw new Error(`converter emitted ${model.tensors.length} tensors for ${list.length}`);
  const ctx: GgufTypeContext = { blockCount: s.layers, hasOutput: !s.tied };
  const tensors = model.tensors.map((t, i): PlannedTensor => {
    if (i < extra) return { name: t.name, shape: t.shape, type: GGML_TYPE.F32, values: t.values };
    const shape = [...list[i - extra]![1]].reverse();
    return { name: t.name, shape, type: ggufTypeFor(t.name, shape, preset, ctx) };
  });
  // Where writeGgufFile puts the tokenizer, quantization version and file type for each preset.
  const tokenizer = tokenizerKvs(tokenizerMetadata(s));
  const version: GgufKv = { key: 'general.quantization_version', type: 'u32', value: 2 };
  const fileType: GgufKv = { key: 'general.file_type', type: 'u32', value: LLAMA_FILE_TYPE[preset] };
  const metadata = preset === 'Q4_K_M' ? [...model.metadata, ...tokenizer, version, fileType] : [...model.metadata, fileType, version, ...tokenizer];
  return { metadata, tensors };
}

/**
 * A byte-level BPE vocabulary of exactly `vocab` tokens: the 256 byte tokens, then merged strings
 * (every pair of byte tokens, then pair + byte), each with the merge that makes it, then the
 * special tokens last, as Llama 3 orders them.
 */
export function tokenizerMetadata(s: LlamaShape): Record<string, unknown> {
  const { order, charOf } = byteChars();
  const bytes = order.map((b) => charOf[b]!);
  const mergedCount = s.vocab - bytes.length - SPECIALS.length;
  if (mergedCount < 0 || mergedCount > 256 * 256 * 257) throw new Error(`vocab ${s.vocab} does not fit the synthetic tokenizer`);
  const tokens = [...bytes];
  const merges: string[] = [];
  for (let k = 0; k < mergedCount; k++) {
    // The first 65536 merges pair two byte tokens; later ones append a byte to one of those pairs.
    const [a, b] = k < 65536 ? [bytes[k >> 8]!, bytes[k & 255]!] : [tokens[256 + ((k - 65536) >> 8)]!, bytes[(k - 65536) & 255]!];
    tokens.push(a + b);
    merges.push(`${a} ${b}`);
  }
  const firstSpecial = tokens.length;
  tokens.push(...SPECIALS);
  return {
    'tokenizer.ggml.model': 'gpt2',
    'tokenizer.ggml.pre': s.pre,
    'tokenizer.ggml.tokens': tokens,
    'tokenizer.ggml.token_type': tokens.map((_, i) => (i >= firstSpecial ? 3 : 1)),
    'tokenizer.ggml.merges': merges,
    'tokenizer.ggml.bos_token_id': firstSpecial,
    'tokenizer.ggml.eos_token_id': firstSpecial + 1,
  };
}

// ---- random blocks ----

/** xorshift32: fast and seeded; the statistics of benchmark weights need nothing better. */
class Rng {
  private x: number;
  constructor(seed: number) {
    this.x = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return this.x;
  }
  /** Fills whole 32-bit words; `words` covers at least the bytes wanted. */
  fill(words: Uint32Array): void {
    let x = this.x;
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x;
    }
    this.x = x >>> 0;
  }
}

function hashSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function putF16(out: Uint8Array, at: number, value: number): void {
  const h = f32ToF16(value);
  out[at] = h & 0xff;
  out[at + 1] = h >> 8;
}

/** Scales around `base`, jittered by up to 25% either way, as f16 bits. */
function scaleTable(base: number, rng: Rng): Uint16Array {
  return Uint16Array.from({ length: 256 }, () => f32ToF16(base * (0.75 + 0.5 * (rng.next() / 2 ** 32))));
}

/** Per-block headers written over random bytes; each format's quants are uniform, so std = d * spread. */
interface BlockFormat {
  bytes: number;
  patch(out: Uint8Array, at: number, rng: Rng): void;
}

/** Each block type a file of these presets holds, its weights at standard deviation `sigma`. */
function blockFormats(seed: number, sigma: number): Map<number, BlockFormat> {
  const rng = new Rng(hashSeed(seed, `tables ${sigma}`));
  const f16At = (table: Uint16Array, out: Uint8Array, at: number, r: number) => {
    const h = table[r & 255]!;
    out[at] = h & 0xff;
    out[at + 1] = h >> 8;
  };
  // Uniform quants over n levels have a standard deviation of about n / sqrt(12).
  const q8 = scaleTable(sigma / 73.9, rng);
  const q5 = scaleTable(sigma / 9.24, rng);
  const q4 = scaleTable(sigma / 4.61, rng);
  // Q4_K: sub-block scales sc in 32..63 and mins m = sc with dmin = 7.5 d centre the nibbles (mean 7.5).
  const q4kD = sigma / (4.61 * 47.5);
  const q4kScales = Array.from({ length: 256 }, () => {
    const packed = new Uint8Array(12);
    for (let s = 0; s < 8; s++) {
      const v = 32 + (rng.next() & 31);
      if (s < 4) {
        packed[s] = v;
        packed[s + 4] = v;
      } else {
        packed[s + 4] = (v & 0xf) | ((v & 0xf) << 4);
        packed[s - 4]! |= (v >> 4) << 6;
        packed[s]! |= (v >> 4) << 6;
      }
    }
    return packed;
  });
  // Q6_K: int8 scales in 64..127, quants 0..63 centred by -32.
  const q6kD = sigma / (18.5 * 95.5);
  const q6kScales = Array.from({ length: 256 }, () => Uint8Array.from({ length: 16 }, () => 64 + (rng.next() & 63)));
  return new Map<number, BlockFormat>([
    [GGML_TYPE.Q8_0, { bytes: 34, patch: (out, at, r) => f16At(q8, out, at, r.next()) }],
    [GGML_TYPE.Q5_0, { bytes: 22, patch: (out, at, r) => f16At(q5, out, at, r.next()) }],
    [GGML_TYPE.Q4_0, { bytes: 18, patch: (out, at, r) => f16At(q4, out, at, r.next()) }],
    [GGML_TYPE.Q4_K, {
      bytes: 144,
      patch: (out, at, r) => {
        const x = r.next();
        const d = q4kD * (0.75 + 0.5 * ((x & 255) / 255));
        putF16(out, at, d);
        putF16(out, at + 2, 7.5 * d);
        out.set(q4kScales[(x >>> 8) & 255]!, at + 4);
      },
    }],
    [GGML_TYPE.Q6_K, {
      bytes: 210,
      patch: (out, at, r) => {
        const x = r.next();
        out.set(q6kScales[x & 255]!, at + 192);
        putF16(out, at + 208, q6kD * (0.75 + 0.5 * (((x >>> 8) & 255) / 255)));
      },
    }],
  ]);
}

/** A tensor's bytes, `CHUNK_BYTES` at a time (whole blocks), handed to `write`. */
function streamTensor(t: PlannedTensor, seed: number, formats: (name: string) => Map<number, BlockFormat>, write: (bytes: Uint8Array) => void): void {
  const total = ggmlByteSize(t.type, t.shape);
  if (t.type === GGML_TYPE.F32) {
    const values = t.values ?? new Float32Array(total / 4).fill(1);
    write(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    return;
  }
  const rng = new Rng(hashSeed(seed, t.name));
  if (t.type === GGML_TYPE.F16) {
    // Triangular noise of the same spread: the sum of two uniforms.
    const out = new Uint8Array(total);
    for (let i = 0; i < total; i += 2) putF16(out, i, (isHead(t.name) ? HEAD_SIGMA : SIGMA) * 2.45 * ((rng.next() / 2 ** 32) + (rng.next() / 2 ** 32) - 1));
    write(out);
    return;
  }
  const format = formats(t.name).get(t.type);
  if (!format) throw new Error(`${t.name}: no random blocks for ggml type ${t.type}`);
  const chunk = Math.min(total, Math.floor(CHUNK_BYTES / format.bytes) * format.bytes);
  const words = new Uint32Array(Math.ceil(chunk / 4));
  const buf = new Uint8Array(words.buffer, 0, chunk);
  for (let done = 0; done < total; done += chunk) {
    const n = Math.min(chunk, total - done);
    rng.fill(words.subarray(0, Math.ceil(n / 4)));
    for (let at = 0; at < n; at += format.bytes) format.patch(buf, at, rng);
    write(buf.subarray(0, n));
  }
}

// ---- the container, streamed ----

/** Header, then each tensor streamed and padded to the alignment (the layout of encodeGguf). */
function writeContainer(path: string, metadata: readonly GgufKv[], tensors: readonly PlannedTensor[], seed: number): void {
  const align = GGUF_DEFAULT_ALIGNMENT;
  const header = encodeGgufHeader(metadata, tensors, align);
  const layers = blockFormats(seed, SIGMA);
  const heads = blockFormats(seed, HEAD_SIGMA);
  const formats = (name: string) => (isHead(name) ? heads : layers);
  const fd = openSync(path, 'w');
  try {
    let written = 0;
    const write = (b: Uint8Array) => {
      for (let at = 0; at < b.length;) at += writeSync(fd, b, at, b.length - at);
      written += b.length;
    };
    write(header);
    const zeros = new Uint8Array(align);
    for (const t of tensors) {
      streamTensor(t, seed, formats, write);
      write(zeros.subarray(0, (align - (written % align)) % align));
    }
  } finally {
    closeSync(fd);
  }
}

export interface RandomGgufOptions {
  seed?: number;
  /** Progress lines while a file is written (large files take a while). */
  log?: (line: string) => void;
}

/** The path of a random GGUF of this shape and type, written on first use. */
export function randomGguf(shape: LlamaShape, preset: RandomGgufType, options: RandomGgufOptions = {}): string {
  const seed = options.seed ?? 1;
  const key = hashSeed(GENERATOR_VERSION, JSON.stringify({ ...shape, preset, seed })).toString(16).padStart(8, '0');
  const path = join(BENCH_DIR, `${shape.name}-${preset}-seed${seed}-${key}.gguf`);
  if (existsSync(path)) return path;
  mkdirSync(BENCH_DIR, { recursive: true });
  // Files of this shape, type and seed from older generators: a large one would waste gigabytes.
  const stem = `${shape.name}-${preset}-seed${seed}-`;
  for (const f of readdirSync(BENCH_DIR)) if (f.startsWith(stem) && /^[0-9a-f]{8}\.gguf$/.test(f.slice(stem.length))) rmSync(join(BENCH_DIR, f));
  const { metadata, tensors } = plan(shape, preset);
  const bytes = tensors.reduce((n, t) => n + ggmlByteSize(t.type, t.shape), 0);
  options.log?.(`writing ${path} (${(bytes / 2 ** 30).toFixed(2)} GiB) ...`);
  const t0 = performance.now();
  // Written aside and renamed: an interrupted run never leaves a half file under the final name.
  const partial = `${path}.${process.pid}.part`;
  writeContainer(partial, metadata, tensors, seed);
  renameSync(partial, path);
  options.log?.(`  written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return path;
}
