// The fixtures' GGUF writer, read back by @huggingface/gguf (an independent parser): the container,
// the converter's per-architecture layout (names, ggml shapes, value changes, metadata) on every
// fixture architecture, and the ggml type each preset gives a tensor.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf } from '@huggingface/gguf';
import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../kernels/quant.ts';
import { mulberry32 } from './helpers/random.ts';
import { configJson } from './fixtures/hf-config.ts';
import type { GgufKv, GgufModel, GgufPreset, GgufTypeContext, HfTensor } from './fixtures/gguf-writer.ts';
import {
  encodeGguf, GGML_TYPE, ggmlByteSize, ggufTensorsFromCheckpoint, ggufTypeFor, permuteRope, tokenizerKvs, writeGgufFile,
} from './fixtures/gguf-writer.ts';
import type { ModelSpec } from './fixtures/specs.ts';
import { MODEL_SPECS } from './fixtures/specs.ts';
import { buildVocab } from './fixtures/vocab.ts';
import { randomWeights } from './fixtures/weights.ts';

/** Serves `bytes` as a server answering Range requests would. */
function serve(bytes: Uint8Array): typeof fetch {
  return (async (_input: unknown, init?: RequestInit) => {
    const m = /bytes=(\d+)-(\d+)/.exec(new Headers(init?.headers).get('range') ?? '');
    const start = Math.min(m ? Number(m[1]) : 0, bytes.length);
    const end = Math.min(m ? Number(m[2]) : bytes.length - 1, bytes.length - 1);
    return new Response(bytes.slice(start, end + 1), { status: 206, headers: { 'content-range': `bytes ${start}-${end}/${bytes.length}` } });
  }) as typeof fetch;
}

function parse(bytes: Uint8Array) {
  return gguf('https://fixtures.test/model.gguf', { fetch: serve(bytes), typedMetadata: true });
}

const spec = (name: string): ModelSpec => MODEL_SPECS.find((s) => s.name === name)!;

function fixture(s: ModelSpec): { config: Record<string, unknown>; weights: Map<string, HfTensor> } {
  return { config: configJson(s, buildVocab(s), 'F32'), weights: randomWeights(s, s.seed) };
}

function convert(name: string): GgufModel {
  const { config, weights } = fixture(spec(name));
  return ggufTensorsFromCheckpoint(config, weights, { name });
}

const kvOf = (model: GgufModel) => new Map(model.metadata.map((kv) => [kv.key, kv]));
const tensorOf = (model: GgufModel, name: string) => {
  const t = model.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`no ${name} in ${model.tensors.map((x) => x.name).join(', ')}`);
  return t;
};

describe('encodeGguf', () => {
  const metadata: GgufKv[] = [
    { key: 'general.architecture', type: 'string', value: 'llama' },
    { key: 't.u8', type: 'u8', value: 200 },
    { key: 't.i8', type: 'i8', value: -5 },
    { key: 't.u16', type: 'u16', value: 60000 },
    { key: 't.i16', type: 'i16', value: -30000 },
    { key: 't.u32', type: 'u32', value: 4_000_000_000 },
    { key: 't.i32', type: 'i32', value: -2_000_000_000 },
    { key: 't.u64', type: 'u64', value: 2n ** 60n },
    { key: 't.i64', type: 'i64', value: -(2n ** 40n) },
    { key: 't.f32', type: 'f32', value: 1e-5 },
    { key: 't.f64', type: 'f64', value: Math.PI },
    { key: 't.bool', type: 'bool', value: true },
    { key: 't.utf8', type: 'string', value: 'héllo ▁wörld' },
    { key: 't.strings', type: 'array', itemType: 'string', value: ['<s>', '', 'ünï'] },
    { key: 't.i32s', type: 'array', itemType: 'i32', value: [1, -2, 3] },
    { key: 't.f32s', type: 'array', itemType: 'f32', value: [0.5, -1000] },
  ];
  const f32 = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
  const f16 = new Uint8Array(10).map((_, i) => i + 1);
  const q8 = new Uint8Array(ggmlByteSize(GGML_TYPE.Q8_0, [32, 2])).map((_, i) => (i * 7) & 0xff);
  const tensors = [
    { name: 'a.weight', shape: [3, 2], type: GGML_TYPE.F32, data: f32 },
    { name: 'b.weight', shape: [5], type: GGML_TYPE.F16, data: f16 },
    { name: 'c.weight', shape: [32, 2], type: GGML_TYPE.Q8_0, data: q8 },
  ];

  it('writes a GGUF v3 file that an independent parser reads back exactly', async () => {
    const bytes = encodeGguf({ metadata, tensors });
    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('GGUF');
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect(view.getUint32(4, true)).toBe(3);
    expect(view.getBigUint64(8, true)).toBe(3n);
    expect(view.getBigUint64(16, true)).toBe(BigInt(metadata.length));

    const parsed = await parse(bytes);
    expect(parsed.metadata.version).toBe(3);
    expect(parsed.littleEndian).toBe(true);
    const typed = parsed.typedMetadata;
    const ids = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 };
    for (const kv of metadata) {
      const got = typed[kv.key]!;
      expect(got.type, kv.key).toBe(ids[kv.type]);
      if (kv.type === 'array') {
        expect(got.subType, kv.key).toBe(ids[kv.itemType]);
        expect(got.value).toEqual(kv.itemType === 'f32' ? kv.value.map((v) => Math.fround(v as number)) : kv.value);
      } else {
        expect(got.value, kv.key).toEqual(kv.type === 'f32' ? Math.fround(kv.value as number) : kv.value);
      }
    }
    expect(parsed.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype])).toEqual(tensors.map((t) => [t.name, t.shape, t.type]));
    // Offsets are relative to the data section and each starts on the alignment.
    expect(parsed.tensorInfos.map((t) => Number(t.offset))).toEqual([0, 32, 64]);
    const base = Number(parsed.tensorDataOffset);
    expect(base % 32).toBe(0);
    expect(bytes.length).toBe(base + 64 + 96);
    tensors.forEach((t, i) => {
      const at = base + Number(parsed.tensorInfos[i]!.offset);
      expect(bytes.subarray(at, at + t.data.length)).toEqual(t.data);
    });
    // Padding is zeros: after b's 10 bytes up to c, and between the header and the data.
    expect([...bytes.subarray(base + 32 + 10, base + 64)].every((b) => b === 0)).toBe(true);
    expect([...bytes.subarray(parsed.tensorInfoByteRange[1], base)].every((b) => b === 0)).toBe(true);
  });

  it('pads to a custom alignment and says so in general.alignment', async () => {
    const bytes = encodeGguf({ metadata, tensors, alignment: 64 });
    const parsed = await parse(bytes);
    expect(parsed.typedMetadata['general.alignment']).toEqual({ value: 64, type: 4 });
    expect(Number(parsed.tensorDataOffset) % 64).toBe(0);
    expect(parsed.tensorInfos.map((t) => Number(t.offset))).toEqual([0, 64, 128]);
  });

  it('rejects malformed input', () => {
    const base = { metadata: [], tensors: [] };
    expect(() => encodeGguf({ ...base, metadata: [{ key: 'x', type: 'u32', value: -1 }] })).toThrow(/not a valid u32/);
    expect(() => encodeGguf({ ...base, metadata: [{ key: 'x', type: 'u8', value: 1.5 }] })).toThrow(/not a valid u8/);
    expect(() => encodeGguf({ ...base, metadata: [{ key: 'x', type: 'bool', value: 1 }] })).toThrow(/not a valid bool/);
    expect(() => encodeGguf({ ...base, metadata: [{ key: 'x', type: 'u8', value: 1 }, { key: 'x', type: 'u8', value: 2 }] })).toThrow(/duplicate kv/);
    expect(() => encodeGguf({ ...base, tensors: [{ name: 'a', shape: [3, 2], type: GGML_TYPE.F32, data: new Uint8Array(20) }] })).toThrow(/takes 24/);
    expect(() => encodeGguf({ ...base, tensors: [{ name: 'a', shape: [48], type: GGML_TYPE.Q8_0, data: new Uint8Array(51) }] })).toThrow(/not a multiple/);
    expect(() => encodeGguf({ ...base, alignment: 48 })).toThrow(/power of two/);
  });
});

describe('q / k rope permutation', () => {
  it('interleaves the two halves of each head', () => {
    // 2 heads of 4 rows, 2 columns: row r holds [10r, 10r + 1].
    const data = Float32Array.from({ length: 16 }, (_, i) => 10 * Math.floor(i / 2) + (i % 2));
    const out = permuteRope(data, [8, 2], 2);
    // Head rows [a0 a1 b0 b1] become [a0 b0 a1 b1].
    const rows = [0, 2, 1, 3, 4, 6, 5, 7];
    expect([...out]).toEqual(rows.flatMap((r) => [10 * r, 10 * r + 1]));
  });

  it('is applied to LLaMA q rows over the query heads and k rows over the kv heads', () => {
    const hidden = 8;
    const rowsOf = (n: number) => ({ shape: [n, hidden], data: Float32Array.from({ length: n * hidden }, (_, i) => Math.floor(i / hidden)) });
    const config = {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: hidden, intermediate_size: 16, num_hidden_layers: 1,
      num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 4, max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 10000,
    };
    const tensors = new Map<string, HfTensor>([
      ['model.layers.0.self_attn.q_proj.weight', rowsOf(8)],
      ['model.layers.0.self_attn.k_proj.weight', rowsOf(4)],
      ['model.layers.0.self_attn.v_proj.weight', rowsOf(4)],
    ]);
    const model = ggufTensorsFromCheckpoint(config, tensors);
    const rowIds = (name: string) => {
      const t = tensorOf(model, name);
      return Array.from({ length: t.shape[1]! }, (_, r) => t.values[r * hidden]);
    };
    expect(rowIds('blk.0.attn_q.weight')).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
    expect(rowIds('blk.0.attn_k.weight')).toEqual([0, 2, 1, 3]);
    expect(rowIds('blk.0.attn_v.weight')).toEqual([0, 1, 2, 3]);
    expect(tensorOf(model, 'blk.0.attn_q.weight').shape).toEqual([8, 8]);
  });

  it('leaves Qwen, Phi-3 and Gemma rows as they are', () => {
    for (const name of ['tiny-qwen2', 'tiny-qwen3', 'tiny-gemma2']) {
      const { config, weights } = fixture(spec(name));
      const model = ggufTensorsFromCheckpoint(config, weights);
      expect(tensorOf(model, 'blk.0.attn_q.weight').values).toEqual(weights.get('model.layers.0.self_attn.q_proj.weight')!.data);
      expect(tensorOf(model, 'blk.0.attn_k.weight').values).toEqual(weights.get('model.layers.0.self_attn.k_proj.weight')!.data);
    }
    const { config, weights } = fixture(spec('tiny-phi3'));
    expect(tensorOf(ggufTensorsFromCheckpoint(config, weights), 'blk.0.attn_qkv.weight').values).toEqual(weights.get('model.layers.0.self_attn.qkv_proj.weight')!.data);
  });
});

/** Layer 0's tensors and the global ones each fixture architecture converts to. */
const EXPECTED: Record<string, { arch: string; global: string[]; layer0: string[] }> = {
  'tiny-llama': {
    arch: 'llama', global: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
    layer0: ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `${n}.weight`),
  },
  'tiny-qwen2': {
    arch: 'qwen2', global: ['token_embd.weight', 'output_norm.weight'],
    layer0: [...['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `${n}.weight`), 'attn_q.bias', 'attn_k.bias', 'attn_v.bias'],
  },
  'tiny-smollm2': {
    arch: 'llama', global: ['token_embd.weight', 'output_norm.weight'],
    layer0: ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `${n}.weight`),
  },
  'tiny-llama3': {
    arch: 'llama', global: ['rope_freqs.weight', 'token_embd.weight', 'output_norm.weight', 'output.weight'],
    layer0: ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `${n}.weight`),
  },
  'tiny-qwen3': {
    arch: 'qwen3', global: ['token_embd.weight', 'output_norm.weight'],
    layer0: ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_q_norm', 'attn_k_norm', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `${n}.weight`),
  },
  'tiny-phi3': {
    arch: 'phi3', global: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
    layer0: ['attn_norm', 'attn_qkv', 'attn_output', 'ffn_norm', 'ffn_up', 'ffn_down'].map((n) => `${n}.weight`),
  },
  'tiny-mistral': {
    arch: 'llama', global: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
    layer0: ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `${n}.weight`),
  },
  'tiny-gemma3': {
    arch: 'gemma3', global: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
    layer0: ['attn_norm', 'post_attention_norm', 'ffn_norm', 'post_ffw_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'attn_q_norm', 'attn_k_norm', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `${n}.weight`),
  },
  // Gemma 1 and 2 files have no output tensor: the converter drops lm_head, the head is token_embd.
  'tiny-gemma': {
    arch: 'gemma', global: ['token_embd.weight', 'output_norm.weight'],
    layer0: ['attn_norm', 'ffn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `${n}.weight`),
  },
  'tiny-gemma2': {
    arch: 'gemma2', global: ['token_embd.weight', 'output_norm.weight'],
    layer0: ['attn_norm', 'post_attention_norm', 'ffn_norm', 'post_ffw_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `${n}.weight`),
  },
  'tiny-mixtral': {
    arch: 'llama', global: ['token_embd.weight', 'output_norm.weight', 'output.weight'],
    layer0: ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate_inp', 'ffn_gate_exps', 'ffn_up_exps', 'ffn_down_exps'].map((n) => `${n}.weight`),
  },
  'tiny-gpt2': {
    arch: 'gpt2', global: ['token_embd.weight', 'position_embd.weight', 'output_norm.weight', 'output_norm.bias'],
    layer0: ['attn_norm', 'attn_qkv', 'attn_output', 'ffn_norm', 'ffn_up', 'ffn_down'].flatMap((n) => [`${n}.weight`, `${n}.bias`]),
  },
};

describe('per-architecture layout', () => {
  const names = MODEL_SPECS.map((s) => s.name).filter((n) => n !== 'tiny-qwen3-moe');

  it('covers every fixture architecture', () => {
    expect(new Set(names.map((n) => spec(n).modelType))).toEqual(new Set(MODEL_SPECS.map((s) => s.modelType).filter((t) => t !== 'qwen3_moe')));
    expect(Object.keys(EXPECTED).sort()).toEqual([...names].sort());
  });

  for (const name of names) {
    it(`${name}: tensor names and ggml shapes`, () => {
      const s = spec(name);
      const model = convert(name);
      const exp = EXPECTED[name]!;
      expect(model.arch).toBe(exp.arch);
      const layers = Array.from({ length: s.layers }, (_, l) => exp.layer0.map((n) => `blk.${l}.${n}`));
      expect(model.tensors.map((t) => t.name).sort()).toEqual([...exp.global, ...layers.flat()].sort());
      for (const t of model.tensors) expect(t.values.length, t.name).toBe(t.shape.reduce((a, b) => a * b, 1));
    });
  }

  it('reverses PyTorch shapes into ggml order', () => {
    const s = spec('tiny-llama');
    const model = convert('tiny-llama');
    expect(tensorOf(model, 'token_embd.weight').shape).toEqual([s.hidden, s.vocabSize]);
    expect(tensorOf(model, 'blk.0.attn_k.weight').shape).toEqual([s.hidden, s.kvHeads * 16]);
    expect(tensorOf(model, 'blk.0.ffn_down.weight').shape).toEqual([s.intermediate, s.hidden]);
    expect(tensorOf(model, 'blk.0.attn_norm.weight').shape).toEqual([s.hidden]);
    const phi = convert('tiny-phi3');
    // Fused tensors stay fused: qkv is [q; k; v] rows, gate_up is [gate; up] rows.
    expect(tensorOf(phi, 'blk.0.attn_qkv.weight').shape).toEqual([64, (4 + 2 * 2) * 16]);
    expect(tensorOf(phi, 'blk.0.ffn_up.weight').shape).toEqual([64, 2 * 128]);
  });

  it('GPT-2: Conv1D weights transposed to [out, in], position embeddings kept', () => {
    const { config, weights } = fixture(spec('tiny-gpt2'));
    const model = ggufTensorsFromCheckpoint(config, weights);
    const hf = weights.get('h.1.attn.c_attn.weight')!; // [in 64, out 192]
    const t = tensorOf(model, 'blk.1.attn_qkv.weight');
    expect(t.shape).toEqual([64, 192]); // ggml [in, out]: 192 rows of 64
    for (const [o, i] of [[0, 0], [5, 17], [191, 63]] as const) expect(t.values[o * 64 + i]).toBe(hf.data[i * 192 + o]);
    expect(tensorOf(model, 'blk.1.ffn_down.weight').shape).toEqual([256, 64]);
    expect(tensorOf(model, 'blk.1.attn_qkv.bias').values).toEqual(weights.get('h.1.attn.c_attn.bias')!.data);
    expect(tensorOf(model, 'position_embd.weight').values).toEqual(weights.get('wpe.weight')!.data);
    // transformers' save_pretrained prefix converts the same.
    const prefixed = new Map([...weights].map(([n, v]) => [`transformer.${n}`, v]));
    expect(ggufTensorsFromCheckpoint(config, prefixed).tensors.map((x) => x.name)).toEqual(model.tensors.map((x) => x.name));
  });

  it('Gemma: every RMSNorm weight is stored as 1 + w, embeddings and projections as they are', () => {
    for (const name of ['tiny-gemma', 'tiny-gemma2', 'tiny-gemma3']) {
      const { config, weights } = fixture(spec(name));
      const model = ggufTensorsFromCheckpoint(config, weights);
      const pairs: [string, string][] = [
        ['model.norm.weight', 'output_norm.weight'],
        ['model.layers.1.input_layernorm.weight', 'blk.1.attn_norm.weight'],
      ];
      if (name !== 'tiny-gemma') pairs.push(['model.layers.1.post_feedforward_layernorm.weight', 'blk.1.post_ffw_norm.weight'], ['model.layers.1.pre_feedforward_layernorm.weight', 'blk.1.ffn_norm.weight']);
      if (name === 'tiny-gemma3') pairs.push(['model.layers.0.self_attn.q_norm.weight', 'blk.0.attn_q_norm.weight']);
      for (const [hf, gg] of pairs) {
        const w = weights.get(hf)!.data;
        expect([...tensorOf(model, gg).values], `${name} ${gg}`).toEqual([...w].map((x) => Math.fround(x + 1)));
      }
      expect(tensorOf(model, 'token_embd.weight').values).toEqual(weights.get('model.embed_tokens.weight')!.data);
    }
    // Gemma 3 drops embedding rows past the tokenizer's size.
    const { config, weights } = fixture(spec('tiny-gemma3'));
    expect(tensorOf(ggufTensorsFromCheckpoint(config, weights, { vocabRows: 250 }), 'token_embd.weight').shape).toEqual([64, 250]);
  });

  it('Mixtral: experts stacked per projection (gate = w1, up = w3, down = w2), router kept', () => {
    const s = spec('tiny-mixtral');
    const { config, weights } = fixture(s);
    const model = ggufTensorsFromCheckpoint(config, weights);
    const E = s.moe!.experts;
    expect(tensorOf(model, 'blk.1.ffn_gate_inp.weight').shape).toEqual([64, E]);
    expect(tensorOf(model, 'blk.1.ffn_gate_exps.weight').shape).toEqual([64, 64, E]);
    expect(tensorOf(model, 'blk.1.ffn_down_exps.weight').shape).toEqual([64, 64, E]);
    for (const [w, gg] of [['w1', 'ffn_gate_exps'], ['w3', 'ffn_up_exps'], ['w2', 'ffn_down_exps']] as const) {
      const stacked = tensorOf(model, `blk.1.${gg}.weight`).values;
      for (let e = 0; e < E; e++) {
        const part = weights.get(`model.layers.1.block_sparse_moe.experts.${e}.${w}.weight`)!.data;
        expect(stacked.subarray(e * part.length, (e + 1) * part.length)).toEqual(part);
      }
    }
  });

  it('Qwen3-MoE: converts when every layer is sparse, and refuses dense (mlp_only_layers) layers', () => {
    const base = spec('tiny-qwen3-moe');
    expect(() => convert('tiny-qwen3-moe')).toThrow(/cannot map tensor model\.layers\.1\.mlp\.gate_proj/);
    const s: ModelSpec = { ...base, moe: { ...base.moe!, denseLayers: [] } };
    const { config, weights } = fixture(s);
    const model = ggufTensorsFromCheckpoint(config, weights);
    expect(model.arch).toBe('qwen3moe');
    expect(tensorOf(model, 'blk.1.ffn_gate_inp.weight').shape).toEqual([64, 4]);
    expect(tensorOf(model, 'blk.1.ffn_gate_exps.weight').shape).toEqual([64, 48, 4]);
    expect(tensorOf(model, 'blk.1.ffn_up_exps.weight').shape).toEqual([64, 48, 4]);
    expect(tensorOf(model, 'blk.1.ffn_down_exps.weight').shape).toEqual([48, 64, 4]);
    expect(tensorOf(model, 'blk.1.attn_q_norm.weight').shape).toEqual([16]);
    const part = weights.get('model.layers.0.mlp.experts.3.down_proj.weight')!.data;
    expect(tensorOf(model, 'blk.0.ffn_down_exps.weight').values.subarray(3 * part.length)).toEqual(part);
    const kv = kvOf(model);
    expect(kv.get('qwen3moe.expert_count')?.value).toBe(4);
    expect(kv.get('qwen3moe.expert_used_count')?.value).toBe(2);
    expect(kv.get('qwen3moe.expert_feed_forward_length')?.value).toBe(48);
    expect(kv.get('qwen3moe.feed_forward_length')?.value).toBe(128);
  });

  it('reads the wrapped and bare name layouts', () => {
    const { config, weights } = fixture(spec('tiny-llama'));
    const plain = ggufTensorsFromCheckpoint(config, weights).tensors.map((t) => t.name);
    const wrapped = new Map([...weights].map(([n, t]) => [n.startsWith('lm_head.') ? `language_model.${n}` : n.replace(/^model\./, 'language_model.model.'), t]));
    const bare = new Map([...weights].filter(([n]) => n !== 'lm_head.weight').map(([n, t]) => [n.replace(/^model\./, ''), t]));
    expect(ggufTensorsFromCheckpoint(config, wrapped).tensors.map((t) => t.name)).toEqual(plain);
    expect(ggufTensorsFromCheckpoint(config, bare).tensors.map((t) => t.name)).toEqual(plain.filter((n) => n !== 'output.weight'));
  });
});

describe('metadata', () => {
  const check = (model: GgufModel, expected: Record<string, [GgufKv['type'], unknown] | undefined>) => {
    const kv = kvOf(model);
    for (const [key, want] of Object.entries(expected)) {
      if (want === undefined) {
        expect(kv.has(key), `${key} should be absent`).toBe(false);
        continue;
      }
      const got = kv.get(key);
      expect(got, key).toBeDefined();
      expect([got!.type, got!.type === 'f32' ? Math.fround(got!.value as number) : got!.value], key).toEqual([want[0], want[0] === 'f32' ? Math.fround(want[1] as number) : want[1]]);
    }
  };

  it('LLaMA family', () => {
    check(convert('tiny-llama'), {
      'general.architecture': ['string', 'llama'], 'general.type': ['string', 'model'], 'general.name': ['string', 'tiny-llama'],
      'llama.block_count': ['u32', 4], 'llama.context_length': ['u32', 256], 'llama.embedding_length': ['u32', 64],
      'llama.feed_forward_length': ['u32', 128], 'llama.attention.head_count': ['u32', 4], 'llama.attention.head_count_kv': ['u32', 2],
      'llama.rope.freq_base': ['f32', 10000], 'llama.attention.layer_norm_rms_epsilon': ['f32', 1e-5],
      'llama.attention.key_length': ['u32', 16], 'llama.attention.value_length': ['u32', 16],
      'llama.vocab_size': ['u32', 256], 'llama.rope.dimension_count': ['u32', 16],
      'llama.rope.scaling.type': undefined, 'llama.attention.sliding_window': undefined, 'general.file_type': undefined,
    });
    // head_dim absent from config.json: no key/value length, the rope width from hidden / heads.
    check(convert('tiny-smollm2'), { 'llama.attention.key_length': undefined, 'llama.rope.dimension_count': ['u32', 16], 'llama.attention.head_count_kv': ['u32', 1] });
    // Mistral's sliding window is not carried into the llama architecture.
    check(convert('tiny-mistral'), { 'general.architecture': ['string', 'llama'], 'llama.attention.sliding_window': undefined, 'llama.attention.head_count_kv': ['u32', 1] });
    check(convert('tiny-mixtral'), {
      'general.architecture': ['string', 'llama'], 'llama.expert_count': ['u32', 4], 'llama.expert_used_count': ['u32', 2],
      'llama.feed_forward_length': ['u32', 64], 'llama.rope.freq_base': ['f32', 1e6], 'llama.expert_feed_forward_length': undefined,
    });
  });

  it('Llama 3 rope scaling: no scaling keys, a rope_freqs tensor of divisors', () => {
    const s = spec('tiny-llama3');
    const { config: written, weights } = fixture(s);
    // The fixture's config names its original context at the top level too; this case reads the default.
    const { original_max_position_embeddings: _top, ...config } = written;
    const model = ggufTensorsFromCheckpoint(config, weights);
    check(model, { 'llama.rope.scaling.type': undefined, 'llama.rope.scaling.factor': undefined, 'llama.rope.freq_base': ['f32', 500000] });
    const expected = (oldContext: number) => Array.from({ length: 8 }, (_, j) => {
      const wavelen = 2 * Math.PI * 500000 ** ((2 * j) / 16);
      if (wavelen < oldContext / 4) return 1;
      if (wavelen > oldContext / 1) return 8;
      const smooth = (oldContext / wavelen - 1) / (4 - 1);
      return 1 / ((1 - smooth) / 8 + smooth);
    });
    const freqs = tensorOf(model, 'rope_freqs.weight');
    expect(freqs.shape).toEqual([8]);
    // The original context is read from config's top level (8192 when absent), not from rope_scaling.
    const want8192 = expected(8192);
    expect(want8192.slice(0, 4)).toEqual([1, 1, 1, 1]);
    expect(want8192[4]).toBeGreaterThan(1);
    expect(want8192[4]).toBeLessThan(8);
    [...freqs.values].forEach((v, j) => expect(v).toBeCloseTo(want8192[j]!, 5));
    const top = ggufTensorsFromCheckpoint({ ...config, original_max_position_embeddings: 64 }, weights);
    [...tensorOf(top, 'rope_freqs.weight').values].forEach((v, j) => expect(v).toBeCloseTo(expected(64)[j]!, 5));
  });

  it('Qwen and Phi-3', () => {
    check(convert('tiny-qwen2'), {
      'general.architecture': ['string', 'qwen2'], 'qwen2.rope.freq_base': ['f32', 1e6], 'qwen2.attention.layer_norm_rms_epsilon': ['f32', 1e-6],
      'qwen2.vocab_size': undefined, 'qwen2.rope.dimension_count': undefined, 'qwen2.attention.key_length': undefined, 'qwen2.attention.sliding_window': undefined,
    });
    check(convert('tiny-qwen3'), { 'qwen3.attention.key_length': ['u32', 32], 'qwen3.attention.value_length': ['u32', 32], 'qwen3.embedding_length': ['u32', 64] });
    check(convert('tiny-phi3'), {
      'general.architecture': ['string', 'phi3'], 'phi3.context_length': ['u32', 256], 'phi3.rope.scaling.original_context_length': ['u32', 256],
      'phi3.rope.dimension_count': ['u32', 16], 'phi3.rope.freq_base': ['f32', 10000], 'phi3.attention.sliding_window': ['u32', 192],
      'phi3.attention.head_count_kv': ['u32', 2], 'phi3.feed_forward_length': ['u32', 128],
    });
  });

  it('Gemma 1, 2 and 3', () => {
    check(convert('tiny-gemma'), {
      'general.architecture': ['string', 'gemma'], 'gemma.attention.key_length': ['u32', 32], 'gemma.attention.head_count_kv': ['u32', 1],
      'gemma.rope.freq_base': undefined, 'gemma.rope.dimension_count': undefined,
    });
    check(convert('tiny-gemma2'), {
      'gemma2.attn_logit_softcapping': ['f32', 5], 'gemma2.final_logit_softcapping': ['f32', 100], 'gemma2.attention.sliding_window': ['u32', 16],
      'gemma2.attention.key_length': ['u32', 32], 'gemma2.rope.freq_base': undefined,
    });
    check(convert('tiny-gemma3'), {
      'general.architecture': ['string', 'gemma3'], 'gemma3.rope.freq_base': ['f32', 1e6], 'gemma3.rope.freq_base_swa': ['f32', 10000],
      'gemma3.rope.scaling.type': ['string', 'linear'], 'gemma3.rope.scaling.factor': ['f32', 8], 'gemma3.attention.sliding_window': ['u32', 16],
      'gemma3.attention.key_length': ['u32', 32], 'gemma3.attention.head_count_kv': ['u32', 2], 'gemma3.context_length': ['u32', 256],
      'gemma3.attn_logit_softcapping': undefined, 'gemma3.final_logit_softcapping': undefined,
    });
  });

  it('GPT-2', () => {
    const model = convert('tiny-gpt2');
    check(model, {
      'general.architecture': ['string', 'gpt2'], 'gpt2.block_count': ['u32', 2], 'gpt2.context_length': ['u32', 256],
      'gpt2.embedding_length': ['u32', 64], 'gpt2.feed_forward_length': ['u32', 256], 'gpt2.attention.head_count': ['u32', 4],
      'gpt2.attention.layer_norm_epsilon': ['f32', 1e-5], 'gpt2.attention.head_count_kv': undefined, 'gpt2.rope.freq_base': undefined,
    });
    // Converter order: architecture first, then type and name, then the hyperparameters.
    expect(model.metadata.slice(0, 4).map((kv) => kv.key)).toEqual(['general.architecture', 'general.type', 'general.name', 'gpt2.block_count']);
  });

  it('tokenizer values get gguf-py types', () => {
    const kvs = tokenizerKvs({
      'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': ['<unk>', 'a'], 'tokenizer.ggml.scores': [0, -1.5],
      'tokenizer.ggml.token_type': [2, 1], 'tokenizer.ggml.bos_token_id': 1, 'tokenizer.ggml.add_bos_token': true,
      'tokenizer.ggml.merges': [], 'tokenizer.chat_template': '', 'x.big': 5n, 'x.neg': -3, 'x.f': 0.25,
      'x.explicit': { type: 'u16', value: 7 },
    });
    expect(kvs).toEqual([
      { key: 'tokenizer.ggml.model', type: 'string', value: 'llama' },
      { key: 'tokenizer.ggml.tokens', type: 'array', itemType: 'string', value: ['<unk>', 'a'] },
      { key: 'tokenizer.ggml.scores', type: 'array', itemType: 'f32', value: [0, -1.5] },
      { key: 'tokenizer.ggml.token_type', type: 'array', itemType: 'i32', value: [2, 1] },
      { key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: 1 },
      { key: 'tokenizer.ggml.add_bos_token', type: 'bool', value: true },
      { key: 'x.big', type: 'u64', value: 5n },
      { key: 'x.neg', type: 'i32', value: -3 },
      { key: 'x.f', type: 'f32', value: 0.25 },
      { key: 'x.explicit', type: 'u16', value: 7 },
    ]);
  });
});

describe('ggufTypeFor', () => {
  const { F32, F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K } = GGML_TYPE;

  it('keeps norms, biases, 1-D tensors, the router and learned positions in F32', () => {
    for (const preset of ['F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_K_M'] as GgufPreset[]) {
      const ctx = { blockCount: 2, hasOutput: true };
      expect(ggufTypeFor('blk.0.attn_norm.weight', [256], preset, ctx)).toBe(F32);
      expect(ggufTypeFor('blk.0.attn_q_norm.weight', [128], preset, ctx)).toBe(F32);
      expect(ggufTypeFor('blk.0.attn_q.bias', [256], preset, ctx)).toBe(F32);
      expect(ggufTypeFor('rope_freqs.weight', [64], preset, ctx)).toBe(F32);
      expect(ggufTypeFor('blk.0.ffn_gate_inp.weight', [256, 8], preset, ctx)).toBe(F32);
      expect(ggufTypeFor('position_embd.weight', [256, 1024], preset, ctx)).toBe(F32);
    }
    expect(ggufTypeFor('blk.0.attn_q.weight', [64, 64], 'F32')).toBe(F32);
    expect(ggufTypeFor('blk.0.attn_q.weight', [64, 64], 'F16')).toBe(F16);
    expect(ggufTypeFor('token_embd.weight', [64, 100], 'BF16')).toBe(BF16);
  });

  it('Q8_0 as the converter writes it: Q8_0 where rows split into 32s, else F16', () => {
    expect(ggufTypeFor('output.weight', [64, 256], 'Q8_0')).toBe(Q8_0);
    expect(ggufTypeFor('blk.0.ffn_down_exps.weight', [48, 64, 4], 'Q8_0')).toBe(F16);
  });

  it('Q4_K_M: Q6_K for the head and for attn_v / ffn_down in the "more bits" layers, Q4_K elsewhere', () => {
    const ctx: GgufTypeContext = { blockCount: 8, hasOutput: true };
    const at = (kind: string, l: number) => ggufTypeFor(`blk.${l}.${kind}.weight`, [256, 256], 'Q4_K_M', ctx);
    const layers = [0, 1, 2, 3, 4, 5, 6, 7];
    // n/8 = 1: layer 0, layers >= 7, and every third from layer 1 on (3, 6).
    expect(layers.map((l) => at('attn_v', l))).toEqual([Q6_K, Q4_K, Q4_K, Q6_K, Q4_K, Q4_K, Q6_K, Q6_K]);
    expect(layers.map((l) => at('ffn_down', l))).toEqual([Q6_K, Q4_K, Q4_K, Q6_K, Q4_K, Q4_K, Q6_K, Q6_K]);
    expect(layers.map((l) => at('ffn_down_exps', l))).toEqual([Q6_K, Q4_K, Q4_K, Q6_K, Q4_K, Q4_K, Q6_K, Q6_K]);
    expect(layers.map((l) => at('attn_qkv', l))).toEqual([Q6_K, Q4_K, Q4_K, Q6_K, Q4_K, Q4_K, Q6_K, Q6_K]);
    for (const kind of ['attn_q', 'attn_k', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_gate_exps']) expect(layers.map((l) => at(kind, l))).toEqual(layers.map(() => Q4_K));
    // Two layers: only layer 1 (>= 7 * 2 / 8); four layers: 2 (every third) and 3.
    expect([0, 1].map((l) => ggufTypeFor(`blk.${l}.attn_v.weight`, [256, 256], 'Q4_K_M', { blockCount: 2, hasOutput: true }))).toEqual([Q4_K, Q6_K]);
    expect([0, 1, 2, 3].map((l) => ggufTypeFor(`blk.${l}.ffn_down.weight`, [256, 256], 'Q4_K_M', { blockCount: 4, hasOutput: true }))).toEqual([Q4_K, Q4_K, Q6_K, Q6_K]);
    expect(ggufTypeFor('output.weight', [256, 1000], 'Q4_K_M', ctx)).toBe(Q6_K);
    expect(ggufTypeFor('token_embd.weight', [256, 1000], 'Q4_K_M', ctx)).toBe(Q4_K);
    // Tied: the embedding is the head.
    expect(ggufTypeFor('token_embd.weight', [256, 1000], 'Q4_K_M', { blockCount: 8, hasOutput: false })).toBe(Q6_K);
    // Eight experts: attn_k / attn_v to Q8_0, attn_output to Q5_K.
    const moe = { blockCount: 8, hasOutput: true, expertCount: 8 };
    expect(ggufTypeFor('blk.1.attn_v.weight', [256, 256], 'Q4_K_M', moe)).toBe(Q8_0);
    expect(ggufTypeFor('blk.1.attn_k.weight', [256, 256], 'Q4_K_M', moe)).toBe(Q8_0);
    expect(ggufTypeFor('blk.1.attn_output.weight', [256, 256], 'Q4_K_M', moe)).toBe(Q5_K);
  });

  it('Q4_K_M on rows that do not split into 256s: Q4_K -> Q5_0, Q6_K -> Q8_0, then F16', () => {
    const ctx = { blockCount: 8, hasOutput: true };
    expect(ggufTypeFor('blk.1.attn_q.weight', [64, 64], 'Q4_K_M', ctx)).toBe(Q5_0);
    expect(ggufTypeFor('blk.0.attn_v.weight', [64, 32], 'Q4_K_M', ctx)).toBe(Q8_0);
    expect(ggufTypeFor('output.weight', [64, 256], 'Q4_K_M', ctx)).toBe(Q8_0);
    expect(ggufTypeFor('blk.1.ffn_down_exps.weight', [48, 64, 4], 'Q4_K_M', ctx)).toBe(F16);
  });

  it('Q4_0: Q4_0 everywhere but the head (Q6_K, or Q8_0 on narrow rows); rows not in 32s fail', () => {
    const ctx = { blockCount: 4, hasOutput: false };
    expect(ggufTypeFor('blk.0.attn_v.weight', [64, 64], 'Q4_0', ctx)).toBe(Q4_0);
    expect(ggufTypeFor('blk.3.ffn_down.weight', [128, 64], 'Q4_0', ctx)).toBe(Q4_0);
    expect(ggufTypeFor('token_embd.weight', [256, 100], 'Q4_0', ctx)).toBe(Q6_K);
    expect(ggufTypeFor('token_embd.weight', [64, 100], 'Q4_0', ctx)).toBe(Q8_0);
    expect(() => ggufTypeFor('blk.0.ffn_down_exps.weight', [48, 64, 4], 'Q4_0', ctx)).toThrow(/no fallback/);
    expect(() => ggufTypeFor('blk.0.attn_q.weight', [64, 64], 'Q4_0')).toThrow(/GgufTypeContext/);
  });
});

describe('writeGgufFile', () => {
  const tokenizer = (s: ModelSpec) => {
    const vocab = buildVocab(s);
    return {
      'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.pre': 'default', 'tokenizer.ggml.tokens': vocab.tokens,
      'tokenizer.ggml.scores': vocab.tokens.map(() => 0), 'tokenizer.ggml.token_type': vocab.tokens.map((_, i) => (vocab.specialIds.has(i) ? 3 : 1)),
      'tokenizer.ggml.bos_token_id': 1, 'tokenizer.ggml.eos_token_id': 2, 'tokenizer.ggml.add_bos_token': true,
    };
  };
  const noQuant = () => {
    throw new Error('no block types expected');
  };

  async function roundTrip(name: string, preset: GgufPreset, quantize: (type: number, values: Float32Array) => Uint8Array = noQuant) {
    const dir = await mkdtemp(join(tmpdir(), 'gguf-writer-'));
    try {
      const s = spec(name);
      const { config, weights } = fixture(s);
      const path = join(dir, `${name}.gguf`);
      await writeGgufFile(path, config, weights, tokenizer(s), preset, quantize);
      const bytes = new Uint8Array(await readFile(path));
      return { bytes, parsed: await parse(bytes), model: ggufTensorsFromCheckpoint(config, weights, { name }) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  function tensorBytes(r: Awaited<ReturnType<typeof roundTrip>>, name: string): DataView {
    const info = r.parsed.tensorInfos.find((t) => t.name === name)!;
    const at = Number(r.parsed.tensorDataOffset + info.offset);
    const size = ggmlByteSize(info.dtype, info.shape.map(Number));
    return new DataView(r.bytes.buffer, r.bytes.byteOffset + at, size);
  }

  it('F32: every value exact, metadata and tokenizer readable', async () => {
    const r = await roundTrip('tiny-llama3', 'F32');
    const md = r.parsed.typedMetadata;
    expect(md['general.architecture']!.value).toBe('llama');
    expect(md['general.name']!.value).toBe('tiny-llama3');
    expect(md['general.file_type']).toEqual({ value: 0, type: 4 });
    expect(md['general.quantization_version']).toEqual({ value: 2, type: 4 });
    expect(md['tokenizer.ggml.tokens']!.subType).toBe(8);
    expect(md['tokenizer.ggml.scores']!.subType).toBe(6);
    expect(md['tokenizer.ggml.token_type']!.subType).toBe(5);
    expect(md['tokenizer.ggml.bos_token_id']).toEqual({ value: 1, type: 4 });
    expect(md['tokenizer.ggml.add_bos_token']).toEqual({ value: true, type: 7 });
    expect(r.parsed.tensorInfos.map((t) => t.name)).toEqual(r.model.tensors.map((t) => t.name));
    for (const t of r.model.tensors) {
      const info = r.parsed.tensorInfos.find((x) => x.name === t.name)!;
      expect(info.shape.map(Number), t.name).toEqual(t.shape);
      expect(info.dtype).toBe(GGML_TYPE.F32);
      expect(Number(info.offset) % 32).toBe(0);
      const view = tensorBytes(r, t.name);
      const got = Float32Array.from({ length: t.values.length }, (_, i) => view.getFloat32(i * 4, true));
      expect(got, t.name).toEqual(t.values);
    }
  });

  it('F16: matrices as halves, norms and biases F32', async () => {
    const r = await roundTrip('tiny-qwen2', 'F16');
    expect(r.parsed.typedMetadata['general.file_type']!.value).toBe(1);
    const types = new Map(r.parsed.tensorInfos.map((t) => [t.name, t.dtype]));
    expect(types.get('token_embd.weight')).toBe(GGML_TYPE.F16);
    expect(types.get('blk.0.attn_q.weight')).toBe(GGML_TYPE.F16);
    expect(types.get('blk.0.attn_q.bias')).toBe(GGML_TYPE.F32);
    expect(types.get('blk.0.ffn_norm.weight')).toBe(GGML_TYPE.F32);
    const t = tensorOf(r.model, 'blk.1.ffn_down.weight');
    const view = tensorBytes(r, t.name);
    for (let i = 0; i < t.values.length; i += 37) expect(view.getUint16(i * 2, true)).toBe(f32ToF16(t.values[i]!));
    expect(f16ToF32(view.getUint16(0, true))).toBe(t.values[0]);
  });

  it('block types go through quantize with the tensor values; quantized files end with the type keys', async () => {
    const calls: { type: number; length: number }[] = [];
    const fake = (type: number, values: Float32Array) => {
      calls.push({ type, length: values.length });
      const width = type === GGML_TYPE.Q8_0 || type === GGML_TYPE.Q5_0 ? 32 : 256;
      return new Uint8Array(ggmlByteSize(type, [width, values.length / width]));
    };
    const r = await roundTrip('tiny-llama', 'Q4_K_M', fake);
    const types = new Map(r.parsed.tensorInfos.map((t) => [t.name, t.dtype]));
    // Rows of 64 and 128 do not split into 256s: Q4_K falls back to Q5_0 and Q6_K to Q8_0.
    expect(types.get('blk.0.attn_q.weight')).toBe(GGML_TYPE.Q5_0);
    expect(types.get('blk.3.attn_v.weight')).toBe(GGML_TYPE.Q8_0);
    expect(types.get('blk.1.attn_v.weight')).toBe(GGML_TYPE.Q5_0);
    expect(types.get('output.weight')).toBe(GGML_TYPE.Q8_0);
    expect(types.get('token_embd.weight')).toBe(GGML_TYPE.Q5_0);
    expect(types.get('output_norm.weight')).toBe(GGML_TYPE.F32);
    expect(calls).toContainEqual({ type: GGML_TYPE.Q8_0, length: 256 * 64 });
    expect(r.parsed.metadata.kv_count).toBe(BigInt(Object.keys(r.parsed.typedMetadata).length - 3));
    const keys = Object.keys(r.parsed.typedMetadata).slice(3);
    expect(keys.slice(-2)).toEqual(['general.quantization_version', 'general.file_type']);
    expect(r.parsed.typedMetadata['general.file_type']!.value).toBe(15);
  });

  it('writes every fixture architecture that converts', async () => {
    for (const s of MODEL_SPECS.filter((x) => x.modelType !== 'qwen3_moe')) {
      const r = await roundTrip(s.name, 'F32');
      expect(r.parsed.typedMetadata['general.architecture']!.value, s.name).toBe(r.model.arch);
      expect(r.parsed.tensorInfos.length).toBe(r.model.tensors.length);
    }
  });

  it('seeded random tensors of odd sizes survive the round trip', async () => {
    const rand = mulberry32(7);
    const tensors = Array.from({ length: 5 }, (_, i) => {
      const shape = [1 + Math.floor(rand() * 9), 1 + i];
      const values = Float32Array.from({ length: shape[0]! * shape[1]! }, () => rand() * 2 - 1);
      return { name: `t${i}.weight`, shape, type: GGML_TYPE.F32, data: new Uint8Array(values.buffer) };
    });
    const parsed = await parse(encodeGguf({ metadata: [], tensors }));
    parsed.tensorInfos.forEach((info, i) => {
      expect(info.shape.map(Number)).toEqual(tensors[i]!.shape);
      expect(Number(info.offset) % 32).toBe(0);
    });
  });
});
