// What each family's config.json turns into, and what the runtime refuses by name: scaled rotary
// embeddings (the runtime's f32 frequencies against the fixtures' independent float64 formula,
// with Llama 3.1's own parameters and the tiny fixture's), sliding windows, Gemma 2 and 3, the
// experts of Qwen3-MoE; and, on the float64 reference, that each of these changes the goldens.
import { describe, expect, it } from 'vitest';
import { ropeInvFreq, type RopeScaling } from '../kernels/cpu/rope.ts';
import { parseConfig } from '../client/model/config.ts';
import { layerTensorNames } from '../client/model/arch/names.ts';
import { ropeFrequencies, type RefRopeScaling } from './fixtures/reference-math.ts';

const llama31: RopeScaling = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 };

describe('scaled rope frequencies', () => {
  it.each([
    ['Llama 3.1 (theta 500000, head 128)', 500_000, 128, llama31],
    ['the tiny-llama3 fixture (original context 64, head 16)', 500_000, 16, { ...llama31, originalMaxPositions: 64 } as RopeScaling],
    ['linear x4', 10_000, 64, { type: 'linear', factor: 4 } as RopeScaling],
  ])('%s: f32 as Hugging Face computes them, within f32 rounding of the float64 formula', (_what, theta, dim, scaling) => {
    const ours = ropeInvFreq(theta, dim, scaling);
    const exact = ropeFrequencies(theta, dim, scaling as RefRopeScaling);
    for (let i = 0; i < ours.length; i++) expect(Math.abs(ours[i]! - exact[i]!) / exact[i]!).toBeLessThan(2e-6);
  });

  it('divides the low frequencies, keeps the high ones and blends the band between', () => {
    const plain = ropeInvFreq(500_000, 16);
    // The tiny-llama3 fixture's head: wavelengths 6.3, 32.5, 168, ... against bands at 64 / 4 and 64.
    const scaled = ropeInvFreq(500_000, 16, { ...llama31, originalMaxPositions: 64 });
    const ratio = Array.from(scaled, (v, i) => v / plain[i]!);
    expect(ratio[0]).toBe(1); // wavelength 6.3 < 16: kept
    expect(ratio[1]).toBeGreaterThan(1 / 8); // wavelength 32.5: blended
    expect(ratio[1]).toBeLessThan(1);
    for (const r of ratio.slice(2)) expect(r).toBeCloseTo(1 / 8, 6); // wavelength > 64: divided
  });
});

describe('config rope_scaling', () => {
  const base = { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 128, vocab_size: 256 };
  it('reads llama3 (rope_type) and linear (older type), and none for default or null', () => {
    const llama3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    expect(parseConfig({ ...base, rope_scaling: llama3 }).ropeScaling).toEqual(llama31);
    expect(parseConfig({ ...base, rope_scaling: { type: 'linear', factor: 2 } }).ropeScaling).toEqual({ type: 'linear', factor: 2 });
    expect(parseConfig({ ...base, rope_scaling: { rope_type: 'default' } }).ropeScaling).toBeUndefined();
    expect(parseConfig({ ...base, rope_scaling: null }).ropeScaling).toBeUndefined();
  });

  it.each([
    [{ rope_type: 'dynamic', factor: 2 }, 'rope_scaling.rope_type'],
    [{ rope_type: 'longrope', factor: 2 }, 'rope_scaling.rope_type'],
    [{ rope_type: 'linear', factor: -1 }, 'rope_scaling.factor'],
    [{ rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 }, 'rope_scaling.high_freq_factor'],
    ['llama3', 'rope_scaling'],
  ])('refuses %j by name', (scaling, field) => {
    expect(() => parseConfig({ ...base, rope_scaling: scaling })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_MODEL', message: expect.stringContaining(field) }));
  });
});

describe('the tiny-llama3 fixture', () => {
  it('depends on its rope scaling: the float64 reference without it moves the logits far beyond the goldens\' tolerance', async () => {
    const { loadReference, ReferenceSession, fixtures } = await import('./fixtures/index.ts');
    const set = await fixtures();
    const model = await loadReference('tiny-llama3');
    expect(model.config.ropeScaling?.type).toBe('llama3');
    const ids = set.models.find((m) => m.name === 'tiny-llama3')!.golden.at(-1)!.ids;
    const scaled = new ReferenceSession(model).append(ids).at(-1)!;
    const plain = new ReferenceSession({ ...model, config: { ...model.config, ropeScaling: undefined } }).append(ids).at(-1)!;
    // The goldens hold logits within 5e-3 of the reference; without the scaling they move by units.
    const moved = Math.max(...Array.from(scaled, (v, i) => Math.abs(v - plain[i]!)));
    expect(moved).toBeGreaterThan(1);
  });
});

describe('sliding windows', () => {
  const base = { architectures: ['MistralForCausalLM'], model_type: 'mistral', hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 128, vocab_size: 256, max_position_embeddings: 32768 };
  it('are read for Mistral and Phi-3 (every layer), refused for Qwen2 (some layers), and partial rotary embeddings by name', () => {
    expect(parseConfig({ ...base, sliding_window: 4096 })).toMatchObject({ maxPositions: 32768, slidingWindow: 4096 });
    expect(parseConfig({ ...base, sliding_window: null }).slidingWindow).toBeUndefined();
    expect(parseConfig({ ...base, architectures: ['Phi3ForCausalLM'], model_type: 'phi3', max_position_embeddings: 4096, sliding_window: 2047 })).toMatchObject({ maxPositions: 4096, slidingWindow: 2047 });
    expect(() => parseConfig({ ...base, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', use_sliding_window: true, sliding_window: 4096 })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_MODEL', message: expect.stringContaining('use_sliding_window') }));
    expect(() => parseConfig({ ...base, sliding_window: 2.5 })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_MODEL', message: expect.stringContaining('sliding_window') }));
    expect(() => parseConfig({ ...base, architectures: ['Phi3ForCausalLM'], model_type: 'phi3', partial_rotary_factor: 0.75 })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_MODEL', message: expect.stringContaining('partial_rotary_factor') }));
  });

  it('change tiny-mistral\'s longest golden: the float64 reference without its window of 64 moves the logits far beyond the goldens\' tolerance', async () => {
    const { loadReference, ReferenceSession, fixtures } = await import('./fixtures/index.ts');
    const set = await fixtures();
    const model = await loadReference('tiny-mistral');
    expect(model.config.slidingWindow).toBe(64);
    const golden = set.models.find((m) => m.name === 'tiny-mistral')!.golden.at(-1)!;
    const ids = [...golden.ids, ...golden.greedy];
    expect(ids.length).toBeGreaterThan(64);
    const windowed = new ReferenceSession(model).append(ids).at(-1)!;
    const full = new ReferenceSession({ ...model, config: { ...model.config, slidingWindow: undefined } }).append(ids).at(-1)!;
    expect(Math.max(...Array.from(windowed, (v, i) => Math.abs(v - full[i]!)))).toBeGreaterThan(0.05);
  });
});

describe('Gemma 3 configs', () => {
  const base = { architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, num_hidden_layers: 6, intermediate_size: 128, vocab_size: 256, sliding_window: 512 };
  it('read local and global layers from sliding_window_pattern or layer_types, and their ropes and scales', () => {
    const c = parseConfig({ ...base, query_pre_attn_scalar: 24, rope_scaling: { rope_type: 'linear', factor: 8 } });
    expect(c.gemma!.windows).toEqual([512, 512, 512, 512, 512, undefined]); // every 6th layer global
    expect(c.gemma!.queryScale).toBeCloseTo(24 ** -0.5, 12);
    expect(c.gemma!.embedScale).toBe(Math.fround(8));
    expect(c).toMatchObject({ ropeTheta: 1_000_000, ropeScaling: { type: 'linear', factor: 8 }, tieWordEmbeddings: true, qkNorm: true, activation: 'gelu_tanh' });
    const types = ['full_attention', 'sliding_attention', 'full_attention', 'sliding_attention', 'sliding_attention', 'full_attention'];
    expect(parseConfig({ ...base, layer_types: types }).gemma!.windows).toEqual([undefined, 512, undefined, 512, 512, undefined]);
  });

  it.each([
    ['attn_logit_softcapping', 50],
    ['final_logit_softcapping', 30],
    ['use_bidirectional_attention', true],
    ['hidden_activation', 'gelu'],
    ['layer_types', ['sliding_attention']],
  ])('refuse %s = %j by name (soft-capping is Gemma 2\'s alone)', (field, value) => {
    expect(() => parseConfig({ ...base, [field]: value })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_MODEL', message: expect.stringContaining(field) }));
  });
});

describe('Gemma 1', () => {
  it('has no local layers, scales attention by head_dim^-0.5 and norms only the inputs of attention and the MLP', () => {
    const c = parseConfig({ architectures: ['GemmaForCausalLM'], model_type: 'gemma', hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 32, num_hidden_layers: 3, intermediate_size: 128, vocab_size: 256, hidden_act: 'gelu_pytorch_tanh' });
    expect(c.gemma).toMatchObject({ windows: [undefined, undefined, undefined], sandwich: false, localRopeTheta: 10_000 });
    expect(c.gemma!.queryScale).toBeCloseTo(32 ** -0.5, 12);
    expect(c.qkNorm).toBe(false);
  });
});

describe('Gemma 2', () => {
  it('reads alternating local layers and both soft-caps from its config', () => {
    const c = parseConfig({ architectures: ['Gemma2ForCausalLM'], model_type: 'gemma2', hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, num_hidden_layers: 4, intermediate_size: 128, vocab_size: 256, sliding_window: 4096, attn_logit_softcapping: 50, final_logit_softcapping: 30, query_pre_attn_scalar: 256 });
    expect(c.gemma).toMatchObject({ windows: [4096, undefined, 4096, undefined], attnSoftcap: 50, finalSoftcap: 30, localRopeTheta: 10_000 });
    expect(c.qkNorm).toBe(false);
  });

  it('depends on its soft-caps: the float64 reference without them moves tiny-gemma2\'s logits far beyond the goldens\' tolerance', async () => {
    const { loadReference, ReferenceSession, fixtures } = await import('./fixtures/index.ts');
    const model = await loadReference('tiny-gemma2');
    const ids = (await fixtures()).models.find((m) => m.name === 'tiny-gemma2')!.golden.at(-1)!.ids;
    const capped = new ReferenceSession(model).append(ids).at(-1)!;
    const gemma = { ...model.config.gemma!, attnSoftcap: undefined, finalSoftcap: undefined };
    const plain = new ReferenceSession({ ...model, config: { ...model.config, gemma } }).append(ids).at(-1)!;
    expect(Math.max(...Array.from(capped, (v, i) => Math.abs(v - plain[i]!)))).toBeGreaterThan(1);
  });
});

describe('Mixtral', () => {
  it('routes in every layer to num_experts_per_tok of num_local_experts, always renormalized, under its own names', () => {
    const c = parseConfig({ architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, intermediate_size: 64, vocab_size: 256, num_local_experts: 8, num_experts_per_tok: 2, sliding_window: null });
    expect(c.moe).toEqual({ layout: 'mixtral', experts: 8, topK: 2, normalize: true, intermediate: 64, sparse: [true, true] });
    expect(layerTensorNames(c, 1)).toEqual(expect.arrayContaining(['model.layers.1.block_sparse_moe.gate.weight', 'model.layers.1.block_sparse_moe.experts.7.w1.weight', 'model.layers.1.block_sparse_moe.experts.7.w3.weight', 'model.layers.1.block_sparse_moe.experts.7.w2.weight']));
    expect(layerTensorNames(c, 1).some((n) => n.includes('mlp.'))).toBe(false);
  });
});

describe('Qwen3-MoE', () => {
  it('reads its experts and which layers are sparse, and counts a sparse layer\'s weights with all its experts', async () => {
    const { readCheckpoint, modelDir } = await import('./fixtures/index.ts');
    const { readFile } = await import('node:fs/promises');
    const { weightsPerLayer } = await import('../client/grid/model-spec.ts');
    const json = JSON.parse(await readFile(`${modelDir('tiny-qwen3-moe')}/config.json`, 'utf8')) as Record<string, unknown>;
    const c = parseConfig(json);
    expect(c.moe).toEqual({ layout: 'qwen3', experts: 4, topK: 2, normalize: true, intermediate: 48, sparse: [true, false] });
    const tensors = await readCheckpoint(modelDir('tiny-qwen3-moe'));
    const layer0 = [...tensors].filter(([n]) => n.startsWith('model.layers.0.')).reduce((a, [, t]) => a + t.values.length, 0);
    expect(weightsPerLayer(c)).toBe(layer0);
    expect(() => parseConfig({ ...json, num_experts_per_tok: 5 })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_MODEL', message: expect.stringContaining('num_experts_per_tok') }));
  });
});
