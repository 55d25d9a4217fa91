// The runtime against the fixtures' goldens: a plain greedy loop through Head + Shard [0, n) gives
// exactly the golden tokens (those of @huggingface/transformers on the ONNX twins, checked in
// fixtures.test.ts), and every step's logits match the float64 reference.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackend } from '../client/model/backend/select.ts';
import type { Backend } from '../client/model/backend/types.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import type { FixtureSet, ReferenceModel } from './fixtures/index.ts';
import { BASE_MODELS, fixtures, GOLDEN_STEPS, loadReference, ReferenceSession } from './fixtures/index.ts';
import { gpuContext, greedyRun, maxAbsDiff, openFixture, referenceSteps, runLayers } from './helpers/model-runtime.ts';

/** As in fixtures.test.ts: f32 rounding through random layers stays below ~2e-3; a real bug moves logits by units. */
const LOGIT_TOLERANCE = 5e-3;

let set: FixtureSet;
beforeAll(async () => {
  set = await fixtures();
});

// The CPU backend is fast enough for every golden prompt; SwiftShader takes two per model.
const BACKENDS = [
  { kind: 'cpu' as const, prompts: [0, 1, 2, 3] },
  { kind: 'webgpu' as const, prompts: [1, 3] },
];

describe.each(BACKENDS)('$kind backend', ({ kind, prompts }) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await createBackend(kind, kind === 'webgpu' ? { gpu: await gpuContext() } : {});
  });
  afterAll(() => backend?.destroy());

  describe.each(BASE_MODELS)('%s', (name) => {
    let head: Head;
    let shard: Shard;
    let ref: ReferenceModel;

    beforeAll(async () => {
      const reader = await openFixture(name);
      ref = await loadReference(name);
      head = await Head.load(reader, { backend });
      shard = await Shard.load(reader, { start: 0, end: head.config.numLayers, backend });
    });
    afterAll(() => {
      shard?.destroy();
      head?.destroy();
    });

    it.each(prompts)('golden prompt %i: greedy tokens and logits at every step', async (index) => {
      const golden = set.models.find((m) => m.name === name)!.golden[index]!;
      const run = await greedyRun(head, [shard], golden.ids, GOLDEN_STEPS, `golden-${index}`);
      expect(run.tokens).toEqual(golden.greedy);
      const expected = referenceSteps(ref, golden.ids, golden.greedy);
      const worst = Math.max(...run.logits.map((l, s) => maxAbsDiff(l, expected[s]!)));
      expect(worst).toBeLessThan(LOGIT_TOLERANCE);
      expect(shard.kv.sessions).toBe(0);
    });

    it('logits of every prompt position at once match the reference', async () => {
      const ids = set.models.find((m) => m.name === name)!.golden[2]!.ids;
      const hidden = await runLayers(head, [shard], ids, 0, 'all-rows');
      shard.release('all-rows');
      const all = await head.logits(hidden, ids.length, { all: true });
      const V = head.config.vocabSize;
      expect(all.length).toBe(ids.length * V);
      const expected = new ReferenceSession(ref).append(ids);
      const worst = Math.max(...expected.map((row, t) => maxAbsDiff(all.subarray(t * V, (t + 1) * V), row)));
      expect(worst).toBeLessThan(LOGIT_TOLERANCE);
      // The last row is what logits() gives without { all } (on the GPU one row takes the
      // matrix-vector kernel instead of the tiled product: the same sums in another order).
      const last = await head.logits(hidden, ids.length);
      if (kind === 'cpu') expect(last).toEqual(all.subarray((ids.length - 1) * V));
      else expect(maxAbsDiff(last, all.subarray((ids.length - 1) * V))).toBeLessThan(1e-3);
    });
  });
});
