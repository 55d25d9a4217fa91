// Frames kept as evidence: bounded in bytes and time, handed to their owner only, and when full the
// owner holding most gives up its oldest first, so one client cannot push out another's evidence.
import { describe, expect, it } from 'vitest';
import { FrameRetention } from '../client/grid/retention.ts';

const bytes = (n: number, v = 1) => new Uint8Array(n).fill(v);

describe('frame retention', () => {
  it('gives a frame to its owner only, and forgets it after its time', () => {
    const r = new FrameRetention(1000, 60_000);
    r.keep('s1', 1, 'alice', bytes(10), 0);
    expect(r.get('s1', 1, 'alice', 1)).toEqual(bytes(10));
    expect(r.get('s1', 1, 'mallory', 1)).toBeUndefined();
    expect(r.get('s1', 2, 'alice', 1)).toBeUndefined();
    expect(r.get('s1', 1, 'alice', 60_001)).toBeUndefined();
    expect(r.size).toBe(0);
  });

  it('stays within its bytes: the owner holding most gives up its oldest frame first', () => {
    const r = new FrameRetention(1000, 60_000);
    r.keep('a', 1, 'alice', bytes(300), 0);
    r.keep('a', 2, 'alice', bytes(300), 1);
    for (let i = 0; i < 20; i++) r.keep('m', i, 'mallory', bytes(100), 2 + i);
    expect(r.retainedBytes).toBeLessThanOrEqual(1000);
    // Mallory's flood evicted Mallory's own frames, not both of Alice's.
    expect(r.get('a', 2, 'alice', 30)).toBeDefined();
    expect(r.get('m', 19, 'mallory', 30)).toBeDefined();
    expect(r.get('m', 0, 'mallory', 30)).toBeUndefined();
    // A frame above the whole budget is not kept at all.
    r.keep('x', 1, 'bob', bytes(2000), 40);
    expect(r.get('x', 1, 'bob', 41)).toBeUndefined();
  });

  it('keeps its own copy of a view into a larger buffer', () => {
    const r = new FrameRetention(1000, 60_000);
    const big = bytes(500, 7);
    r.keep('s', 1, 'alice', big.subarray(10, 20), 0);
    big.fill(0);
    expect(r.get('s', 1, 'alice', 1)).toEqual(bytes(10, 7));
  });
});
