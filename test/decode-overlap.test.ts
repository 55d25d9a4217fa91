// The decode batcher keeps two passes in flight on WebGPU: a step that arrives while another
// session's pass is read back is recorded and submitted at once. Outputs equal those of steps run
// one by one; a session never has two steps in flight; the CPU backend runs one pass at a time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecodeBatcher } from '../client/grid/decode-batcher.ts';
import { createBackend } from '../client/model/backend/select.ts';
import type { Backend } from '../client/model/backend/types.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import type { GpuContext } from '../kernels/context.ts';
import { gpuContext, openFixture } from './helpers/model-runtime.ts';

const nextTask = () => new Promise<void>((resolve) => setImmediate(resolve));

describe.each(['cpu', 'webgpu'] as const)('decode passes in flight on the %s backend', (kind) => {
  let backend: Backend;
  let ctx: GpuContext | undefined;
  let head: Head;
  let shard: Shard;

  beforeAll(async () => {
    ctx = kind === 'webgpu' ? await gpuContext() : undefined;
    backend = await createBackend(kind, ctx ? { gpu: ctx } : {});
    const reader = await openFixture('tiny-llama');
    head = await Head.load(reader, { backend });
    shard = await Shard.load(reader, { start: 0, end: head.config.numLayers, backend });
  });
  afterAll(() => {
    shard?.destroy();
    head?.destroy();
    if (kind === 'webgpu') backend?.destroy();
  });

  /** Logits of `ids` decoded one at a time from position 0 on a session of its own, one pass each. */
  async function reference(session: string, ids: number[]): Promise<Float32Array[]> {
    const outs: Float32Array[] = [];
    for (const [p, id] of ids.entries()) {
      const pos = Uint32Array.of(p);
      outs.push(await head.logits(await shard.forward(await head.embed(Uint32Array.of(id), pos), pos, session), 1));
    }
    return outs;
  }

  it('a second session\'s step starts while the first one\'s pass is read back; answers are unchanged', async () => {
    const ends = { head, embed: true, logits: true };
    const layers = { start: 0, end: shard.end };
    const stats = { passes: 0, largest: 0, overlapped: 0 };
    const rounds = 8;
    const a = [5, 9, 14, 3, 7, 11, 2, 6];
    const b = [8, 1, 12, 4, 10, 13, 15, 16];
    const gotA: Float32Array[] = [];
    const gotB: Float32Array[] = [];
    for (let r = 0; r < rounds; r++) {
      // A batcher of its own per round: one that knew both sessions' pace would batch them together.
      const batcher = new DecodeBatcher();
      const step = (id: number, position: number, session: string) => batcher.step(shard, layers, { ids: Uint32Array.of(id) }, position, session, 1, ends);
      // A's pass is submitted on the next task; B arrives after it, while it is in flight.
      const first = step(a[r]!, r, `${kind}-a`);
      let answered = false;
      void first.then(() => (answered = true));
      await nextTask();
      const second = step(b[r]!, r, `${kind}-b`);
      gotA.push(await first);
      gotB.push(await second);
      expect(answered).toBe(true);
      stats.passes += batcher.stats.passes;
      stats.largest = Math.max(stats.largest, batcher.stats.largest);
      stats.overlapped += batcher.stats.overlapped;
    }
    // Each round is two passes (A's, then B's); on WebGPU B's starts before A's is answered.
    expect(stats.passes).toBe(2 * rounds);
    expect(stats.largest).toBe(1);
    if (kind === 'webgpu') expect(stats.overlapped).toBeGreaterThan(rounds / 2);
    else expect(stats.overlapped).toBe(0);
    expect(gotA).toEqual(await reference(`${kind}-ref-a`, a));
    expect(gotB).toEqual(await reference(`${kind}-ref-b`, b));
  });

  it('a session\'s next step waits for its step in flight, then lands after it in its cache', async () => {
    const batcher = new DecodeBatcher();
    const ends = { head, embed: true, logits: true };
    const layers = { start: 0, end: shard.end };
    const step = (id: number, position: number, session: string) => batcher.step(shard, layers, { ids: Uint32Array.of(id) }, position, session, 1, ends);
    // X's first step is in flight when Y's step and X's next one (an eager caller) arrive together.
    const x0 = step(5, 0, `${kind}-x`);
    await nextTask();
    const [y0, x1] = [step(8, 0, `${kind}-y`), step(9, 1, `${kind}-x`)];
    const outs = await Promise.all([x0, y0, x1]);
    // On WebGPU Y's step runs beside X's first, and X's next one after it: three passes of one.
    if (kind === 'webgpu') expect([batcher.stats.passes, batcher.stats.largest, batcher.stats.overlapped]).toEqual([3, 1, 2]);
    else expect([batcher.stats.passes, batcher.stats.largest, batcher.stats.overlapped]).toEqual([2, 2, 0]);
    const [rx0, rx1] = await reference(`${kind}-x-ref`, [5, 9]);
    const [ry0] = await reference(`${kind}-y-ref`, [8]);
    expect(outs).toEqual([rx0, ry0, rx1]);
    expect(shard.sessionLength(`${kind}-x`)).toBe(2);
  });
});
