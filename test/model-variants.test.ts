// Storage variants of a checkpoint (F16, BF16, two shards) hold the same values, so they give the
// same tokens; weights quantized at load (f16, q8, q4) run with finite logits near f32's, and the
// CPU backend, which multiplies by the dequantized values, computes what the GPU computes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackend } from '../client/model/backend/select.ts';
import type { Backend, WeightDtype } from '../client/model/backend/types.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import { storedWeights } from '../kernels/quant.ts';
import type { FixtureModel } from './fixtures/index.ts';
import type { ReferenceModel } from './fixtures/index.ts';
import { fixtures, GOLDEN_STEPS, loadReference, ReferenceSession, VARIANT_MODELS } from './fixtures/index.ts';
import { gpuContext, greedyRun, maxAbsDiff, openFixture, runLayers, type GreedyRun } from './helpers/model-runtime.ts';

let cpu: Backend;
let gpu: Backend;
let models: FixtureModel[];

beforeAll(async () => {
  models = (await fixtures()).models;
  cpu = await createBackend('cpu');
  gpu = await createBackend('webgpu', { gpu: await gpuContext() });
});
afterAll(() => gpu?.destroy());

const golden = (name: string, i: number) => models.find((m) => m.name === name)!.golden[i]!;

async function load(name: string, backend: Backend, weightDtype: WeightDtype = 'f32'): Promise<{ head: Head; shard: Shard; close(): void }> {
  const reader = await openFixture(name);
  const head = await Head.load(reader, { backend, weightDtype });
  const shard = await Shard.load(reader, { start: 0, end: head.config.numLayers, backend, weightDtype });
  return { head, shard, close: () => (shard.destroy(), head.destroy()) };
}

async function greedy(name: string, backend: Backend, prompt: number, weightDtype: WeightDtype = 'f32', steps = GOLDEN_STEPS): Promise<GreedyRun> {
  const m = await load(name, backend, weightDtype);
  try {
    return await greedyRun(m.head, [m.shard], golden(name, prompt).ids, steps, 'v');
  } finally {
    m.close();
  }
}

describe('storage variants of tiny-llama', () => {
  it.each(VARIANT_MODELS)('%s: CPU hidden states equal the F32 checkpoint bit for bit', async (name) => {
    const base = await greedy('tiny-llama', cpu, 3);
    const variant = await greedy(name, cpu, 3);
    expect(variant.tokens).toEqual(golden('tiny-llama', 3).greedy);
    expect(variant.hidden).toEqual(base.hidden);
  });

  it.each(VARIANT_MODELS)('%s: WebGPU gives the golden tokens', async (name) => {
    expect((await greedy(name, gpu, 1)).tokens).toEqual(golden('tiny-llama', 1).greedy);
  });
});

/**
 * Relative RMS distance of the logits from f32's. The fixtures' random layers amplify weight errors
 * (measured: q8 about 0.05 to 0.09, q4 0.45 to 0.7, f16 exact since their values are f16), so
 * these bounds only catch a broken path; the reference test below pins the values down.
 */
const BOUNDS: Record<Exclude<WeightDtype, 'f32'>, number> = { f16: 1e-4, q8: 0.2, q4: 1 };

function relativeRms(actual: Float32Array, expected: Float32Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < actual.length; i++) {
    diff += (actual[i]! - expected[i]!) ** 2;
    norm += expected[i]! ** 2;
  }
  return Math.sqrt(diff / norm);
}

async function promptLogits(name: string, backend: Backend, dtype: WeightDtype, ids: number[]): Promise<Float32Array> {
  const m = await load(name, backend, dtype);
  try {
    return await m.head.logits(await runLayers(m.head, [m.shard], ids, 0, 'q'), ids.length, { all: true });
  } finally {
    m.close();
  }
}

describe.each(['tiny-llama', 'tiny-gpt2'])('%s with weights quantized at load', (name) => {
  let reference: Float32Array;
  let ids: number[];
  beforeAll(async () => {
    ids = golden(name, 2).ids;
    reference = await promptLogits(name, cpu, 'f32', ids);
  });

  it.each(['f16', 'q8', 'q4'] as const)('%s: finite logits near f32 on both backends, CPU and GPU agreeing', async (dtype) => {
    const onCpu = await promptLogits(name, cpu, dtype, ids);
    const onGpu = await promptLogits(name, gpu, dtype, ids);
    expect(onCpu.every(Number.isFinite) && onGpu.every(Number.isFinite)).toBe(true);
    expect(relativeRms(onCpu, reference)).toBeLessThan(BOUNDS[dtype]);
    expect(relativeRms(onGpu, reference)).toBeLessThan(BOUNDS[dtype]);
    expect(maxAbsDiff(onGpu, onCpu)).toBeLessThan(5e-3);
  });
});

describe('tiny-llama quantized at load against the float64 reference', () => {
  /** The reference model with every linear weight replaced by the values the kernels dequantize. */
  async function dequantizedReference(dtype: 'q8' | 'q4'): Promise<ReferenceModel> {
    const ref = await loadReference('tiny-llama');
    const weights = new Map(ref.weights);
    for (const [name, values] of ref.weights) {
      if (!/_proj\.weight$|^lm_head\.weight$/.test(name)) continue;
      const K = name.includes('down_proj') ? ref.config.intermediate : ref.config.hidden;
      const stored = storedWeights(Float32Array.from(values), values.length / K, K, dtype);
      weights.set(name, Float64Array.from(stored));
    }
    return { config: ref.config, weights };
  }

  it.each(['q8', 'q4'] as const)('%s: logits of every prompt position match on both backends', async (dtype) => {
    const ids = golden('tiny-llama', 3).ids;
    const expected = new ReferenceSession(await dequantizedReference(dtype)).append(ids);
    const V = expected[0]!.length;
    for (const backend of [cpu, gpu]) {
      const logits = await promptLogits('tiny-llama', backend, dtype, ids);
      const worst = Math.max(...expected.map((row, t) => maxAbsDiff(logits.subarray(t * V, (t + 1) * V), row)));
      expect(worst, backend.kind).toBeLessThan(5e-3);
    }
  });
});
