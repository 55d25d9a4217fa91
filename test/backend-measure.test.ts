// 'auto' picks the backend by measuring, not by presence, on Node's WebGPU (Dawn; SwiftShader's
// Vulkan driver on a machine without a GPU): a slice of a decoder layer on a real model's shapes
// runs on both backends, and the one predicted faster for a pass over the assigned layers serves.
// On a software adapter that is the CPU. A serving peer measures when a model is assigned, reports
// the choice and both timings in its status, and announces the chosen backend; a forced choice is
// left alone.
import { relative, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeShape } from '../client/grid/serving-backend.ts';
import { openModelNode } from '../client/model/checkpoint/node.ts';
import { chooseBackend, type BackendDecision } from '../client/model/backend/measure.ts';
import { GpuContext } from '../kernels/context.ts';
import { nodeGpu } from '../kernels/node-gpu.ts';
import { FIXTURE_DIR, GOLDEN_STEPS } from './fixtures/index.ts';
import { ggufFixture } from './helpers/gguf-fixtures.ts';
import { route, startGridNet, type GridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';

/** SmolLM2-135M's layers: hidden 576, intermediate 1536, 3.5M weights each; a peer holding 8 of them. */
const SMOLLM2 = { hidden: 576, intermediate: 1536 } as const;
const SMOLLM2_8_LAYERS = 8 * 3_538_944;
const DETAIL = /^auto: (cpu|webgpu) \(a pass over its layers: cpu (\d+\.\d+) ms, webgpu (\d+\.\d+) ms on .+; measured on 128x64 \+ 64x128 f32\)$/;

let gpu: GPU;
let software: boolean;
let net: GridNet;

beforeAll(async () => {
  gpu = await nodeGpu();
  const ctx = await GpuContext.create({ gpu });
  software = ctx.adapter.isFallbackAdapter;
  ctx.destroy();
  net = await startGridNet();
});

afterAll(async () => {
  await net?.close();
});

/** Both backends measured; the choice is the one predicted faster. */
function expectMeasured(d: BackendDecision): void {
  expect(d.measurement.adapter).not.toBe('');
  for (const cost of [d.measurement.cpu, d.measurement.webgpu]) {
    expect(cost!.sliceMs).toBeGreaterThan(0);
    expect(cost!.fixedMs).toBeGreaterThanOrEqual(0);
  }
  for (const ms of [d.cpuMs, d.webgpuMs]) {
    expect(ms).toBeTypeOf('number');
    expect(ms!).toBeGreaterThan(0);
    expect(Number.isFinite(ms)).toBe(true);
  }
  expect(d.choice).toBe(d.webgpuMs! < d.cpuMs! ? 'webgpu' : 'cpu');
}

describe("measuring the backends ('auto')", () => {
  it('picks the faster backend on a real layer shape: the CPU on a software adapter; once per (adapter, shape, dtype)', async () => {
    const first = await chooseBackend({ ...SMOLLM2, dtype: 'f32' }, SMOLLM2_8_LAYERS, { gpu });
    first.backend.destroy();
    expectMeasured(first.decision);
    expect(first.decision.measurement.weights).toEqual([[1536, 576], [576, 1536]]);
    expect(first.decision.slices).toBe(SMOLLM2_8_LAYERS / (2 * 1536 * 576));
    if (software) {
      expect(first.decision.choice).toBe('cpu');
      expect(first.backend.kind).toBe('cpu');
    }
    // Asked again in this process, for another number of layers, the shape is not measured again.
    const again = await chooseBackend({ ...SMOLLM2, dtype: 'f32' }, SMOLLM2_8_LAYERS / 8, { gpu });
    again.backend.destroy();
    expect(again.decision.measurement).toBe(first.decision.measurement);
    expect(again.decision.cpuMs!).toBeLessThan(first.decision.cpuMs!);
    if (software) expect(again.backend.kind).toBe('cpu');
    // Another dtype is another measurement, of weights stored that way.
    const q4 = await chooseBackend({ ...SMOLLM2, dtype: 'q4' }, SMOLLM2_8_LAYERS, { gpu });
    q4.backend.destroy();
    expectMeasured(q4.decision);
    expect(q4.decision.measurement).not.toBe(first.decision.measurement);
    expect(q4.decision.measurement.shape.dtype).toBe('q4');
    if (software) expect(q4.decision.choice).toBe('cpu');
  });

  it('measures a GGUF block format through each backend', async () => {
    const { backend, decision } = await chooseBackend({ hidden: 256, intermediate: 512, dtype: 'q4_k' }, 3 * 256 * 512, { gpu });
    backend.destroy();
    expectMeasured(decision);
    expect(decision.measurement.weights).toEqual([[512, 256], [256, 512]]);
  });

  it('refuses a shape or dtype it cannot measure by name', async () => {
    await expect(chooseBackend({ hidden: 0, intermediate: 128, dtype: 'f32' }, 1, { gpu })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(chooseBackend({ hidden: 64, intermediate: 128, dtype: 'toString' as 'f32' }, 1, { gpu })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe("a serving peer with backend 'auto'", () => {
  it('serves on the backend it measured faster, says so in its status, announces it, and gives the golden tokens', async () => {
    const peer = await net.peer('auto', 'auto-peer', { backend: 'auto', gpu });
    // It announced WebGPU (as a page with an adapter does) before it measured anything.
    peer.mesh.updateCapabilities({ ...peer.mesh.signaling.capabilities, throughput: { gflops: 0.3, backend: 'webgpu' } });
    const spec = await net.spec('tiny-llama');
    await peer.assign(spec, 0, 4);
    const status = peer.status()[0]!;
    expect(status.state).toBe('ready');
    const [, choice, cpuMs, webgpuMs] = DETAIL.exec(status.detail ?? '') ?? [];
    expect(status.detail).toMatch(DETAIL);
    expect(choice).toBe(Number(webgpuMs) < Number(cpuMs) ? 'webgpu' : 'cpu');
    if (software) expect(choice).toBe('cpu');
    expect(peer.backendOf('tiny-llama')).toBe(choice);
    expect(peer.mesh.signaling.capabilities.throughput.backend).toBe(choice);

    // The network sees what it announced.
    const client = await net.join('auto', 'auto-client');
    await waitFor(() => client.peers().find((p) => p.peerId === peer.peerId)?.capabilities.throughput.backend === choice, 5000, 'the announced backend');

    // The backend it made for the range serves it: the golden greedy tokens.
    const chain = await net.chain(client, 'tiny-llama', [route([peer, 0, 4])]);
    const head = await net.head('tiny-llama');
    const model = await net.model('tiny-llama');
    for (const golden of model.golden.slice(0, 2)) {
      const result = await chain.generate(head, golden.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 });
      expect(result.tokens, golden.prompt).toEqual(golden.greedy);
    }

    // A second peer of this process, assigned the same layers, reuses the measurement (the same
    // timings to the hundredth of a millisecond).
    const other = await net.peer('auto', 'auto-peer-2', { backend: 'auto', gpu });
    await other.assign(spec, 0, 4);
    expect(other.status()[0]!.detail).toBe(status.detail);
    expect(other.backendOf('tiny-llama')).toBe(choice);
  });

  it("measures a GGUF file's layers in the block format the file keeps them in", async () => {
    const path = await ggufFixture('tiny-llama', 'Q8_0');
    expect(await decodeShape(await openModelNode(path), 0, 'f32')).toEqual({ hidden: 64, intermediate: 128, dtype: 'q8_0' });
    const spec = { ...(await net.spec('tiny-llama')), modelId: 'tiny-llama-q8', source: `${net.files.url}/${relative(FIXTURE_DIR, path).split(sep).join('/')}` };
    const peer = await net.peer('auto', 'auto-gguf', { backend: 'auto', gpu });
    await peer.assign(spec, 0, 4);
    expect(peer.status()[0]!.detail).toMatch(/^auto: (cpu|webgpu) \(a pass over its layers: .+; measured on 128x64 \+ 64x128 q8_0\)$/);
    if (software) expect(peer.backendOf('tiny-llama-q8')).toBe('cpu');
  });

  it("leaves a forced 'webgpu' or 'cpu' alone: nothing is measured or announced", async () => {
    const spec = await net.spec('tiny-llama');
    const forcedGpu = await net.peer('auto', 'forced-webgpu', { backend: 'webgpu', gpu });
    const forcedCpu = await net.peer('auto', 'forced-cpu', { backend: 'cpu', gpu });
    const before = [forcedGpu, forcedCpu].map((p) => p.mesh.signaling.capabilities);
    await Promise.all([forcedGpu.assign(spec, 0, 2), forcedCpu.assign(spec, 2, 4)]);
    expect(forcedGpu.backendOf('tiny-llama')).toBe('webgpu');
    expect(forcedCpu.backendOf('tiny-llama')).toBe('cpu');
    for (const [i, p] of [forcedGpu, forcedCpu].entries()) {
      expect(p.status()[0]).toMatchObject({ state: 'ready' });
      expect(p.status()[0]!.detail).toBeUndefined();
      expect(p.mesh.signaling.capabilities).toBe(before[i]);
    }
  });
});
