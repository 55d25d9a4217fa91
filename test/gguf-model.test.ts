// GGUF files read as llama.cpp's converter writes them: every tensor comes back as the safetensors
// checkpoint of the same weights holds it (q/k rows put back in order, experts cut out of their
// stacks), the config the metadata implies is the model's, and the goldens hold when the model
// runs from the file: F32 as closely as from safetensors, Q8_0 and Q4_K_M within their rounding.
// Where llama.cpp reads a checkpoint's file as another model (Gemma's head and query scale,
// Mistral's window), the goldens are the float64 reference's on the checkpoint as it reads it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../client/model/backend/cpu.ts';
import { createBackend } from '../client/model/backend/select.ts';
import type { Backend } from '../client/model/backend/types.ts';
import { openModelNode } from '../client/model/checkpoint/node.ts';
import type { Checkpoint } from '../client/model/checkpoint/reader.ts';
import { checkSpecAgainst, modelSpecFromCheckpoint, modelSpecFromConfig, weightsPerLayer } from '../client/grid/model-spec.ts';
import { parseConfig } from '../client/model/config.ts';
import type { GgufReader } from '../client/model/gguf/reader.ts';
import { dequantizeGgml } from '../kernels/ggml-quants.ts';
import { ropeInvFreq } from '../kernels/cpu/rope.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import { fixtures, GOLDEN_STEPS, loadReference, topTwo, type FixtureSet, type ReferenceModel } from './fixtures/index.ts';
import { GGUF_MODELS, GGUF_TENSOR_MODELS, ggufFixture, llamaCppReference } from './helpers/gguf-fixtures.ts';
import { refConfigFromJson } from './fixtures/hf-config.ts';
import { gpuContext, greedyRun, maxAbsDiff, openFixture, referenceSteps } from './helpers/model-runtime.ts';

/** As model-golden.test.ts: f32 rounding through random layers stays below ~2e-3. */
const F32_TOLERANCE = 5e-3;
/**
 * Against the original weights, Q8_0 moves these random models' logits by up to 15% of a step's
 * logit range (tiny-smollm2, one kv head); the bound is relative to that range.
 */
const Q8_RELATIVE = 0.25;
/** Q4_K_M (here Q5_0 and Q8_0 tensors): up to 30% of the range measured (tiny-llama, prompt 3). */
const Q4_RELATIVE = 0.4;

let set: FixtureSet;
beforeAll(async () => {
  set = await fixtures();
});

describe.each(GGUF_TENSOR_MODELS)('%s from GGUF', (name) => {
  let safetensors: Checkpoint;
  let gguf: Checkpoint;
  beforeAll(async () => {
    safetensors = await openFixture(name);
    gguf = await openModelNode(await ggufFixture(name, 'F32'));
  });

  it('holds every tensor of the checkpoint, with the same values (F32)', async () => {
    const names = safetensors.listTensors().filter((n) => !(n === 'lm_head.weight' && !gguf.listTensors().includes(n)));
    const want = await safetensors.readFloat32(names);
    const got = await gguf.readFloat32(names);
    for (const n of names) {
      expect(got.get(n)!.shape, n).toEqual(want.get(n)!.shape);
      // Gemma's norms were stored as 1 + w in f32: w comes back within the rounding of that sum.
      const shifted = name.includes('gemma') && n.endsWith('norm.weight');
      expect(maxAbsDiff(got.get(n)!.data, want.get(n)!.data), n).toBeLessThanOrEqual(shifted ? 2 ** -22 : 0);
    }
  });

  it('implies the config of the checkpoint', () => {
    const a = parseConfig(safetensors.config);
    const b = parseConfig(gguf.config);
    // Mistral converts to the llama architecture, without its window (llama.cpp runs it in full).
    if (name === 'tiny-mistral') {
      expect([b.modelType, b.slidingWindow]).toEqual(['llama', undefined]);
      b.modelType = a.modelType;
    }
    // The converter drops an untied Gemma 1/2 head: the file is tied.
    if (name === 'tiny-gemma' || name === 'tiny-gemma2') expect(b.tieWordEmbeddings).toBe(true);
    else expect(b.tieWordEmbeddings).toBe(a.tieWordEmbeddings);
    for (const key of ['family', 'modelType', 'vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'intermediateSize', 'qkvBias', 'qkNorm', 'fusedProjections', 'moe'] as const) {
      expect(b[key], key).toEqual(a[key]);
    }
    expect(b.ropeTheta).toBe(Math.fround(a.ropeTheta));
    if (a.ropeScaling?.type === 'llama3') {
      // Llama 3's scaling arrives as per-frequency divisors: the same frequencies, to f32 rounding.
      const [x, y] = [ropeInvFreq(a.ropeTheta, a.headDim, a.ropeScaling), ropeInvFreq(b.ropeTheta, b.headDim, b.ropeScaling)];
      expect(b.ropeScaling?.type).toBe('factors');
      for (let i = 0; i < x.length; i++) expect(Math.abs(x[i]! - y[i]!) / x[i]!).toBeLessThan(1e-6);
    }
    expect(b.normEps).toBe(Math.fround(a.normEps));
  });
});

const BACKENDS = [
  { kind: 'cpu' as const, models: GGUF_MODELS, presets: ['F32', 'Q8_0'] as const, prompts: [0, 1, 2, 3] },
  { kind: 'webgpu' as const, models: ['tiny-llama', 'tiny-phi3', 'tiny-mixtral', 'tiny-gemma2', 'tiny-gemma3', 'tiny-qwen3-moe-sparse'], presets: ['F32', 'Q8_0'] as const, prompts: [1] },
  // Q4_K_M on 64-wide rows: Q5_0 (Q4_K's fallback) and Q8_0 (Q6_K's), as in SmolLM2-135M's hub file.
  { kind: 'cpu' as const, models: ['tiny-llama'], presets: ['Q4_K_M'] as const, prompts: [0, 1, 2, 3] },
  { kind: 'webgpu' as const, models: ['tiny-llama'], presets: ['Q4_K_M'] as const, prompts: [1] },
];

describe.each(BACKENDS)('goldens from GGUF on the $kind backend', ({ kind, models, presets, prompts }) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await createBackend(kind, kind === 'webgpu' ? { gpu: await gpuContext() } : {});
  });
  afterAll(() => backend?.destroy());

  describe.each(models.flatMap((m) => presets.map((p) => [m, p] as const)))('%s %s', (name, preset) => {
    let head: Head;
    let shard: Shard;
    let ref: ReferenceModel;
    let original: ReferenceModel;
    beforeAll(async () => {
      const reader = await openModelNode(await ggufFixture(name, preset));
      // The checkpoint as llama.cpp runs its GGUF (Gemma's query scale and head, Mistral without
      // its window: helpers/gguf-fixtures.ts), stated apart from the reader.
      original = await llamaCppReference(name);
      // The float64 reference on the values and the config the file holds: what the runtime must
      // compute from it.
      const values = await reader.readFloat32(original.weights.keys());
      ref = { config: refConfigFromJson(reader.config), weights: new Map([...values].map(([n, t]) => [n, Float64Array.from(t.data)])) };
      head = await Head.load(reader, { backend });
      shard = await Shard.load(reader, { start: 0, end: head.config.numLayers, backend });
    });
    afterAll(() => {
      shard?.destroy();
      head?.destroy();
    });

    it.each(prompts)('golden prompt %i: greedy tokens, logits at every step', async (index) => {
      const golden = set.models.find((m) => m.name === name.replace(/-sparse$/, ''))!.golden[index]!;
      const run = await greedyRun(head, [shard], golden.ids, GOLDEN_STEPS, `gguf-${index}`);
      const expected = referenceSteps(ref, golden.ids, run.tokens);
      const worst = Math.max(...run.logits.map((l, s) => maxAbsDiff(l, expected[s]!)));
      expect(worst).toBeLessThan(F32_TOLERANCE);
      expect(run.tokens).toEqual(expected.map((l) => topTwo(l).id));
      if (preset === 'F32') {
        // The checkpoint's own model as llama.cpp reads it, and the goldens' where that is the same.
        const steps = referenceSteps(original, golden.ids, run.tokens);
        expect(Math.max(...run.logits.map((l, s) => maxAbsDiff(l, steps[s]!)))).toBeLessThan(F32_TOLERANCE);
        expect(run.tokens).toEqual(steps.map((l) => topTwo(l).id));
        if (!/gemma|mistral|sparse/.test(name)) expect(run.tokens).toEqual(golden.greedy);
        return;
      }
      // Against the original weights: close, and the same tokens wherever the original's top-2 gap
      // is wider than twice the deviation (up to the first step where it is not).
      const unquantized = referenceSteps(original, golden.ids, run.tokens);
      for (let s = 0; s < run.tokens.length; s++) {
        const l = unquantized[s]!;
        const range = Math.max(...l) - Math.min(...l);
        const deviation = maxAbsDiff(run.logits[s]!, l);
        expect(deviation / range).toBeLessThan(preset === 'Q8_0' ? Q8_RELATIVE : Q4_RELATIVE);
        const { id, gap } = topTwo(l);
        if (gap <= 2 * deviation) break;
        expect(run.tokens[s], `step ${s}`).toBe(id);
      }
    });
  });
});

describe('placement counts the bytes a GGUF file keeps quantized', () => {
  it('a Q8_0 layer takes its blocks\' bytes (34 per 32 weights), not four per weight', async () => {
    const reader = await openModelNode(await ggufFixture('tiny-llama', 'Q8_0'));
    const config = parseConfig(reader.config);
    const f32 = modelSpecFromConfig(config, { source: 'x' });
    const q8 = modelSpecFromCheckpoint(reader, { source: 'x' });
    const kv = 2048 * 2 * config.numKvHeads * config.headDim * 4;
    const H = config.hiddenSize;
    const matrices = weightsPerLayer(config) - 2 * H; // all but the two norms
    expect(q8.layerBytes).toBe(Math.ceil((matrices / 32) * 34 + 2 * H * 4 + kv));
    expect(f32.layerBytes).toBe(Math.ceil(weightsPerLayer(config) * 4 + kv));
    // A peer checks a spec against the file: one that understates the quantized bytes is refused.
    expect(() => checkSpecAgainst({ ...q8, layerBytes: q8.layerBytes - 1 }, reader)).toThrow(/needs/);
    expect(() => checkSpecAgainst(q8, reader)).not.toThrow();
  });
});

describe('quantized weights stay in their blocks', () => {
  it.each(['cpu', 'webgpu'] as const)('%s: a Q8_0 matrix is held as q8_0 and multiplies as its decoded values do', async (kind) => {
    const backend = await createBackend(kind, kind === 'webgpu' ? { gpu: await gpuContext() } : {});
    try {
      const reader = (await openModelNode(await ggufFixture('tiny-llama', 'Q8_0'))) as GgufReader;
      const name = 'model.layers.1.mlp.down_proj.weight';
      const blocks = (await reader.readQuantized([name])).get(name)!;
      const w = backend.quantizedWeight(blocks, name);
      expect(w.dtype).toBe('q8_0');
      const values = dequantizeGgml(blocks.type, blocks.bytes, blocks.rows * blocks.cols);
      const x = Float32Array.from({ length: 3 * blocks.cols }, (_, i) => Math.sin(i * 0.37));
      const out = await backend.run((ops) => ops.linear(ops.input(x, [3, blocks.cols]), w));
      for (let m = 0; m < 3; m++) {
        for (let n = 0; n < blocks.rows; n++) {
          let want = 0;
          for (let k = 0; k < blocks.cols; k++) want += x[m * blocks.cols + k]! * values[n * blocks.cols + k]!;
          expect(Math.abs(out[m * blocks.rows + n]! - want)).toBeLessThan(1e-4);
        }
      }
      backend.dispose(w);
    } finally {
      backend.destroy();
    }
  });

  it('the CPU gives the same logits on one thread and on two (every call split)', async () => {
    const path = await ggufFixture('tiny-llama3', 'Q8_0');
    const logits: Float32Array[] = [];
    for (const threads of [1, 2]) {
      const backend = await CpuBackend.create({ threads, parallelThreshold: 0 });
      const reader = await openModelNode(path);
      const head = await Head.load(reader, { backend });
      const shard = await Shard.load(reader, { start: 0, end: head.config.numLayers, backend });
      const g = set.models.find((m) => m.name === 'tiny-llama3')!.golden[2]!;
      logits.push(...(await greedyRun(head, [shard], g.ids, 4, `threads-${threads}`)).logits);
      shard.destroy();
      head.destroy();
      backend.destroy();
    }
    for (let s = 0; s < 4; s++) expect(logits[s + 4]).toEqual(logits[s]);
  });
});
