// Embedding tables larger than one storage binding load in row parts. SwiftShader's limit is far
// above the fixtures' tables, so the backend's maxTableBindingBytes forces the split: at 8 KiB a
// [256, 64] f32 table takes 8 parts (f16: 4), as a 1 GB vocabulary would on a browser's limit.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Table } from '../client/model/backend/types.ts';
import { WebGpuBackend } from '../client/model/backend/webgpu.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import { embeddingRef } from '../kernels/cpu/embedding.ts';
import type { GpuTable } from '../kernels/embedding.ts';
import { packF16 } from '../kernels/quant.ts';
import { partBytes, uploadWeight } from '../kernels/weights.ts';
import type { FixtureSet } from './fixtures/index.ts';
import { fixtures, GOLDEN_STEPS } from './fixtures/index.ts';
import { gpuContext, greedyRun, maxAbsDiff, openFixture } from './helpers/model-runtime.ts';
import { randomFloats } from './kernels/check.ts';

const MAX_TABLE_BINDING = 8 * 1024;

let set: FixtureSet;
let split: WebGpuBackend;
let whole: WebGpuBackend;
beforeAll(async () => {
  set = await fixtures();
  const ctx = await gpuContext();
  split = new WebGpuBackend(ctx, false, { maxTableBindingBytes: MAX_TABLE_BINDING });
  whole = new WebGpuBackend(ctx, false);
});
afterAll(() => {
  split?.destroy();
  whole?.destroy();
});

const golden = (name: string, i: number) => set.models.find((m) => m.name === name)!.golden[i]!;
const parts = (t: Table) => (t as GpuTable).parts.length;

/** Loads the head on `backend`, recording the part count of each table it uploads by name. */
async function loadHead(name: string, backend: WebGpuBackend, weightDtype: 'f32' | 'f16' = 'f32'): Promise<{ head: Head; tables: Map<string, number> }> {
  const tables = new Map<string, number>();
  const table = vi.spyOn(backend, 'table');
  try {
    const head = await Head.load(await openFixture(name), { backend, weightDtype });
    for (const [i, call] of table.mock.calls.entries()) tables.set(call[3], parts(table.mock.results[i]!.value as Table));
    return { head, tables };
  } finally {
    table.mockRestore();
  }
}

describe('a fixture model with its tables split into parts', () => {
  // tiny-llama's token table is its own (untied); tiny-gpt2 ties it to the LM head but splits its position table.
  it.each([
    { name: 'tiny-llama', table: 'model.embed_tokens.weight' },
    { name: 'tiny-gpt2', table: 'wpe.weight' },
  ])('$name ($table in parts) gives the golden tokens', async ({ name, table }) => {
    const { head, tables } = await loadHead(name, split);
    const shard = await Shard.load(await openFixture(name), { start: 0, end: head.config.numLayers, backend: split });
    try {
      expect(tables.get(table)).toBe(8);
      const g = golden(name, 1);
      const run = await greedyRun(head, [shard], g.ids, GOLDEN_STEPS, 'split');
      expect(run.tokens).toEqual(g.greedy);
    } finally {
      shard.destroy();
      head.destroy();
    }
  });

  it('tiny-llama with f16 weights: the split table embeds what the whole one does, bit for bit', async () => {
    const a = await loadHead('tiny-llama', split, 'f16');
    const b = await loadHead('tiny-llama', whole, 'f16');
    try {
      expect(a.tables.get('model.embed_tokens.weight')).toBe(4);
      expect(b.tables.get('model.embed_tokens.weight')).toBe(1);
      const ids = Uint32Array.from([...golden('tiny-llama', 3).ids, 0, 255, 63, 64, 64]);
      const positions = Uint32Array.from(ids, (_, i) => i);
      expect(await a.head.embed(ids, positions)).toEqual(await b.head.embed(ids, positions));
    } finally {
      a.head.destroy();
      b.head.destroy();
    }
  });
});

describe('WebGpuBackend tables', () => {
  const [V, H] = [300, 24];
  const values = randomFloats(77, V * H);
  // Both ends of each part of 100 rows, repeats, and ids past the vocabulary.
  const ids = Uint32Array.from([0, 299, 99, 100, 199, 200, 100, 300, 0xffffffff, 150, 0]);

  it('tableOf serves an f16 weight of several parts as a parted table', async () => {
    const w = uploadWeight(split.ctx, values, [V, H], 'f16', { maxBindingBytes: partBytes('f16', 100, H) });
    expect(w.parts.length).toBe(3);
    const table = split.tableOf(w)!;
    expect(parts(table)).toBe(3);
    const got = await split.run((ops) => ops.embedding(ops.indices(ids), table));
    // A copy of the stored halves (the bound allows for a flushed subnormal).
    expect(maxAbsDiff(got, embeddingRef(ids, packF16(values), V, H))).toBeLessThan(1e-4);
    split.dispose(w);
  });

  it('tableOf gives null for a quantized weight', () => {
    const w = uploadWeight(split.ctx, values, [V, H], 'q8');
    expect(split.tableOf(w)).toBeNull();
    split.dispose(w);
  });

  it('dispose frees every part of a table', () => {
    const table = split.table(values, [V, H], 'f32', 'split');
    const destroys = (table as GpuTable).parts.map((p) => vi.spyOn(p.tensor.buffer, 'destroy'));
    // 85 rows of 96 bytes fit in 8 KiB.
    expect(destroys.length).toBe(4);
    split.dispose(table);
    for (const d of destroys) expect(d).toHaveBeenCalledOnce();
  });
});
