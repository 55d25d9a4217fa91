// A peer's announced memory budget is enforced: a range beyond it is refused, not loaded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';

let net: GridNet;

beforeAll(async () => {
  net = await startGridNet();
});

afterAll(async () => {
  await net.close();
});

describe('memory budget of a serving peer', () => {
  it('refuses layers that exceed its budget and serves a range that fits', async () => {
    const peer = await net.peer('budget', 'budget-peer'); // offers 256 MB
    const spec = { ...(await net.spec('tiny-llama')), layerBytes: 100 * 1024 * 1024 };
    await expect(peer.assign(spec, 0, 3)).rejects.toMatchObject({ code: 'ERR_INSUFFICIENT_MEMORY' });
    expect(peer.status()[0]).toMatchObject({ state: 'failed' });
    expect(peer.status()[0]!.detail).toMatch(/300 MB; this peer offers 256 MB/);
    await peer.assign(spec, 0, 2);
    expect(peer.status()[0]).toMatchObject({ start: 0, end: 2, state: 'ready' });
  });

  it('counts the head parts of a light model against the budget of an end peer', async () => {
    const peer = await net.peer('budget', 'budget-end-peer'); // offers 256 MB
    const spec = { ...(await net.spec('tiny-llama')), modelId: 'tiny-llama-light', layerBytes: 100 * 1024 * 1024, light: true, headBytes: 100 * 1024 * 1024 };
    await expect(peer.assign(spec, 0, 2, { embed: true })).rejects.toMatchObject({ code: 'ERR_INSUFFICIENT_MEMORY' });
    expect(peer.status()[0]!.detail).toMatch(/with the head parts need 300 MB; this peer offers 256 MB/);
    await peer.assign(spec, 0, 1, { embed: true });
    expect(peer.status()[0]).toMatchObject({ start: 0, end: 1, state: 'ready' });
  });
});
