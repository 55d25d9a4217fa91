// Loading shards and heads: a Range-served checkpoint downloads only the headers and the layers
// asked for, every damaged or mismatched checkpoint ends in a named error (never NaN output), and
// the backend is picked as asked.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { layerTensorNames } from '../client/model/arch/names.ts';
import { createBackend } from '../client/model/backend/select.ts';
import { GpuContext } from '../kernels/context.ts';
import { isCpuAdapter } from '../kernels/matvec.ts';
import { nodeGpu } from '../kernels/node-gpu.ts';
import { headerLength, openCheckpoint, type CheckpointReader } from '../client/model/checkpoint/index.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import { parseConfig } from '../client/model/config.ts';
import { Head } from '../client/model/head.ts';
import { layerArch } from '../client/model/layers/index.ts';
import type { LoadProgress } from '../client/model/load-weights.ts';
import { Shard } from '../client/model/shard.ts';
import { BASE_MODELS, FIXTURE_DIR, fixtures, modelDir } from './fixtures/index.ts';
import { copyModel, editConfig, editSafetensors, truncateFile } from './helpers/model-damage.ts';
import { failure, gpuContext, openFixture, runLayers } from './helpers/model-runtime.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';

const cpu = await createBackend('cpu');
const LLAMA_FILE = 'tiny-llama/model.safetensors';

let server: RangeServer;
let tmp: string;

beforeAll(async () => {
  await fixtures();
  server = await startRangeServer(FIXTURE_DIR);
  tmp = await mkdtemp(join(tmpdir(), 'aigrid-model-'));
});
afterAll(async () => {
  await server?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('Range-planned loading', () => {
  let reader: CheckpointReader;
  let headerBytes: number;
  beforeEach(async () => {
    reader = await openCheckpoint(`${server.url}/tiny-llama`, { cache: false });
    headerBytes = 8 + headerLength(new Uint8Array(await readFile(join(FIXTURE_DIR, LLAMA_FILE))));
    server.reset();
  });

  const sizeOf = async (names: string[]) => (await reader.tensorInfo(names)).reduce((sum, t) => sum + t.byteLength, 0);

  it('Shard [1, 3) downloads the headers plus exactly the tensors of layers 1 and 2', async () => {
    // A fresh reader reads the header again when the first layer is asked for.
    reader = await openCheckpoint(`${server.url}/tiny-llama`, { cache: false });
    const opened = server.sent(LLAMA_FILE);
    const config = parseConfig(reader.config);
    const names = [1, 2].flatMap((l) => layerTensorNames(config, l));
    const progress: LoadProgress[] = [];
    const shard = await Shard.load(reader, { start: 1, end: 3, backend: cpu, onProgress: (p) => progress.push(p) });
    const layerBytes = await sizeOf(names);
    expect(opened).toBe(headerBytes);
    expect(server.sent(LLAMA_FILE) - opened).toBe(layerBytes);
    expect(progress.at(-1)).toMatchObject({ bytesDone: layerBytes, bytesTotal: layerBytes });
    expect(progress.every((p, i) => i === 0 || p.bytesDone >= progress[i - 1]!.bytesDone)).toBe(true);
    shard.destroy();
  });

  it('Head downloads only the embedding, final norm and LM head', async () => {
    const head = await Head.load(reader, { backend: cpu });
    expect(server.sent(LLAMA_FILE)).toBe(await sizeOf(['model.embed_tokens.weight', 'model.norm.weight', 'lm_head.weight']));
    head.destroy();
  });
});

describe('the tensors a layer reads are those the checkpoint module names', () => {
  it.each(BASE_MODELS)('%s', async (name) => {
    const reader = await openFixture(name);
    const config = parseConfig(reader.config);
    for (let l = 0; l < config.numLayers; l++) {
      expect(new Set(layerArch(config).shapes(config, l).keys())).toEqual(new Set(layerTensorNames(config, l)));
    }
  });
});

describe('damaged checkpoints', () => {
  let n = 0;
  /** A fresh copy of a fixture model to damage. */
  const damaged = async (name = 'tiny-llama') => copyModel(modelDir(name), join(tmp, `${name}-${n++}`));
  const loadAll = async (dir: string, start = 0, end = 4) => {
    const reader = await openCheckpointNode(dir);
    const head = await Head.load(reader, { backend: cpu });
    const shard = await Shard.load(reader, { start, end, backend: cpu });
    return { head, shard };
  };

  it('a truncated file is ERR_CHECKPOINT_CORRUPT', async () => {
    const dir = await damaged();
    await truncateFile(join(dir, 'model.safetensors'), 20_000);
    await failure(loadAll(dir), 'ERR_CHECKPOINT_CORRUPT', 'truncated');
  });

  it('a header that is not JSON is ERR_CHECKPOINT_CORRUPT', async () => {
    const dir = await damaged();
    const file = join(dir, 'model.safetensors');
    const bytes = new Uint8Array(await readFile(file));
    bytes.fill(0x7b, 8, 40);
    await writeFile(file, bytes);
    await failure(loadAll(dir), 'ERR_CHECKPOINT_CORRUPT', 'not JSON');
  });

  it('NaN bytes in a layer are ERR_CHECKPOINT_CORRUPT naming the tensor; other layers still load', async () => {
    const dir = await damaged();
    await editSafetensors(dir, (t) => t['model.layers.0.mlp.up_proj.weight']!.data.fill(0xff, 400, 404));
    await failure(loadAll(dir), 'ERR_CHECKPOINT_CORRUPT', 'model.layers.0.mlp.up_proj.weight', 'non-finite');
    const { head, shard } = await loadAll(dir, 1, 4);
    const out = await runLayers(head, [shard], [5, 6, 7], 0, 's');
    expect(out.every(Number.isFinite)).toBe(true);
  });

  it('weights that overflow f32 are a named error on both backends, and the session is left as it was', async () => {
    const dir = await damaged();
    await editSafetensors(dir, (t) => {
      const w = t['model.layers.2.mlp.down_proj.weight']!;
      new Float32Array(w.data.buffer, w.data.byteOffset, w.data.byteLength / 4).fill(3e38);
    });
    const gpu = await createBackend('webgpu', { gpu: await gpuContext() });
    for (const backend of [cpu, gpu]) {
      const reader = await openCheckpointNode(dir);
      const head = await Head.load(reader, { backend });
      const shard = await Shard.load(reader, { start: 0, end: 4, backend });
      await failure(runLayers(head, [shard], [5, 6, 7], 0, 's'), 'ERR_INVALID_ARGUMENT', 'output of layers [0, 4)', 'non-finite');
      expect(shard.sessionLength('s')).toBe(0);
      shard.destroy();
      head.destroy();
    }
    gpu.destroy();
  });

  it('a tensor with the wrong shape is ERR_SHAPE_MISMATCH naming it and both shapes', async () => {
    const dir = await damaged();
    await editSafetensors(dir, (t) => {
      t['model.layers.1.self_attn.q_proj.weight']!.shape = [32, 128];
    });
    await failure(loadAll(dir), 'ERR_SHAPE_MISMATCH', 'model.layers.1.self_attn.q_proj.weight', '[32, 128]', '[64, 64]');
  });

  it('a missing tensor is ERR_TENSOR_MISSING naming it', async () => {
    const dir = await damaged();
    await editSafetensors(dir, (t) => {
      delete t['model.layers.2.mlp.down_proj.weight'];
      delete t['lm_head.weight'];
    });
    await failure(Shard.load(await openCheckpointNode(dir), { start: 0, end: 4, backend: cpu }), 'ERR_TENSOR_MISSING', 'model.layers.2.mlp.down_proj.weight');
    await failure(Head.load(await openCheckpointNode(dir), { backend: cpu }), 'ERR_TENSOR_MISSING', 'lm_head.weight');
  });

  it('an I64 tensor where floats are needed is ERR_DTYPE_UNSUPPORTED naming it', async () => {
    const dir = await damaged();
    await editSafetensors(dir, (t) => {
      t['model.layers.3.input_layernorm.weight'] = { dtype: 'I64', shape: [64], data: new Uint8Array(64 * 8) };
    });
    await failure(loadAll(dir), 'ERR_DTYPE_UNSUPPORTED', 'model.layers.3.input_layernorm.weight', 'I64');
  });

  it('a config that disagrees with the tensors is ERR_SHAPE_MISMATCH', async () => {
    const dir = await damaged('tiny-gpt2');
    await editConfig(dir, (c) => {
      c.n_inner = 128;
    });
    await failure(Shard.load(await openCheckpointNode(dir), { start: 0, end: 2, backend: cpu }), 'ERR_SHAPE_MISMATCH', 'h.0.mlp.c_fc.weight', '[64, 256]', '[64, 128]');
  });

  it.each([
    ['an unknown architecture', (c: Record<string, unknown>) => (c.architectures = ['MambaForCausalLM']), 'architectures'],
    ['dynamic rope scaling', (c: Record<string, unknown>) => (c.rope_scaling = { type: 'dynamic', factor: 2 }), 'rope_scaling.rope_type'],
    ['yarn rope scaling', (c: Record<string, unknown>) => (c.rope_scaling = { rope_type: 'yarn', factor: 4 }), 'rope_scaling.rope_type'],
    ['llama3 rope scaling without its frequencies', (c: Record<string, unknown>) => (c.rope_scaling = { rope_type: 'llama3', factor: 8 }), 'rope_scaling.low_freq_factor'],
    ['a pre-quantized checkpoint', (c: Record<string, unknown>) => (c.quantization_config = { quant_method: 'gptq' }), 'quantization_config'],
  ])('%s is ERR_UNSUPPORTED_MODEL', async (_what, edit, field) => {
    const dir = await damaged();
    await editConfig(dir, edit);
    const reader = await openCheckpointNode(dir);
    await failure(Shard.load(reader, { start: 0, end: 1, backend: cpu }), 'ERR_UNSUPPORTED_MODEL', field);
    await failure(Head.load(reader, { backend: cpu }), 'ERR_UNSUPPORTED_MODEL', field);
  });

  it('GPT-2 without attention scaling is ERR_UNSUPPORTED_MODEL', async () => {
    const dir = await damaged('tiny-gpt2');
    await editConfig(dir, (c) => (c.scale_attn_weights = false));
    await failure(Shard.load(await openCheckpointNode(dir), { start: 0, end: 1, backend: cpu }), 'ERR_UNSUPPORTED_MODEL', 'scale_attn_weights');
  });
});

describe('load options', () => {
  it('refuses bad ranges, dtypes, session sizes and budgets by name', async () => {
    const reader = await openFixture('tiny-llama');
    for (const [start, end] of [[0, 0], [2, 1], [0, 5], [-1, 2], [0.5, 2]]) {
      await failure(Shard.load(reader, { start: start!, end: end!, backend: cpu }), 'ERR_INVALID_ARGUMENT', 'layers');
    }
    await failure(Shard.load(reader, { start: 0, end: 1, backend: cpu, weightDtype: 'q2' as never }), 'ERR_INVALID_ARGUMENT', 'weightDtype');
    await failure(Head.load(reader, { backend: cpu, weightDtype: 'i8' as never }), 'ERR_INVALID_ARGUMENT', 'weightDtype');
    await failure(Shard.load(reader, { start: 0, end: 1, backend: cpu, maxSessionTokens: 257 }), 'ERR_INVALID_ARGUMENT', 'maxSessionTokens');
    await failure(Shard.load(reader, { start: 0, end: 1, backend: cpu, kvBudgetBytes: 1000 }), 'ERR_KV_BUDGET', 'kvBudgetBytes');
  });

  it('stops at an aborted signal', async () => {
    const reader = await openFixture('tiny-llama');
    await expect(Shard.load(reader, { start: 0, end: 4, backend: cpu, signal: AbortSignal.abort() })).rejects.toThrow();
  });
});

describe('backend selection', () => {
  it("'auto' takes WebGPU with a GPU given, the CPU without one in Node", async () => {
    const ctx = await gpuContext();
    const auto = await createBackend('auto', { gpu: ctx });
    expect(auto.kind).toBe('webgpu');
    auto.destroy(); // the context was injected, so it stays alive
    expect(() => ctx.checkAlive()).not.toThrow();
    const hasNavigatorGpu = Boolean((globalThis.navigator as Navigator | undefined)?.gpu);
    if (!hasNavigatorGpu) {
      expect((await createBackend('auto')).kind).toBe('cpu');
      await failure(createBackend('webgpu'), 'ERR_NO_WEBGPU');
    }
    await failure(createBackend('tpu' as never), 'ERR_INVALID_ARGUMENT');
  });

  it("'auto' on a GPU whose adapter is a software one takes the CPU; 'webgpu' still takes it", async () => {
    const gpu = await nodeGpu();
    const probe = await GpuContext.create({ gpu });
    const software = isCpuAdapter(probe.adapter);
    probe.destroy();
    const auto = await createBackend('auto', { gpu });
    expect(auto.kind).toBe(software ? 'cpu' : 'webgpu');
    auto.destroy();
    const forced = await createBackend('webgpu', { gpu });
    expect(forced.kind).toBe('webgpu');
    forced.destroy();
  });

  it('a shard and head made with backend choices run and own their backends', async () => {
    const reader = await openFixture('tiny-qwen2');
    const head = await Head.load(reader, { backend: 'cpu' });
    const shard = await Shard.load(reader, { start: 0, end: 2, backend: 'webgpu', gpu: await gpuContext() });
    expect([head.backend.kind, shard.backend.kind]).toEqual(['cpu', 'webgpu']);
    const out = await runLayers(head, [shard], [3, 4], 0, 's');
    expect(out.every(Number.isFinite)).toBe(true);
    shard.destroy();
    head.destroy();
    await failure(shard.forward(out, Uint32Array.of(0, 1), 't'), 'ERR_INVALID_ARGUMENT', 'destroy');
  });
});
