import { describe, expect, it } from 'vitest';
import type { PeerInfo } from '../protocol/index.ts';
import { OfferBook } from '../signaling/glare.ts';
import { TokenBucket } from '../signaling/rate-limit.ts';
import { MemoryRegistry } from '../signaling/registry.ts';
import { CAPS } from './helpers/ws-client.ts';

const peer = (peerId: string): PeerInfo => ({ peerId, capabilities: CAPS, joinedAt: 1 });

describe('MemoryRegistry', () => {
  it('tracks peers per network and drops emptied networks', async () => {
    const store = new MemoryRegistry();
    await store.add('n1', peer('aaaa'));
    await store.add('n1', peer('bbbb'));
    await store.add('n2', peer('aaaa'));
    await store.add('n1', { ...peer('aaaa'), joinedAt: 2 });
    expect(await store.count()).toBe(3);
    expect(await store.count('n1')).toBe(2);
    expect((await store.list('n1')).map((p) => p.peerId)).toEqual(['aaaa', 'bbbb']);
    expect((await store.get('n1', 'aaaa'))?.joinedAt).toBe(2);
    expect(await store.remove('n2', 'aaaa')).toBe(true);
    expect(await store.remove('n2', 'aaaa')).toBe(false);
    expect(await store.networks()).toEqual(['n1']);
    expect(await store.list('n2')).toEqual([]);
    expect(await store.count()).toBe(2);
  });
});

describe('TokenBucket', () => {
  it('allows a burst of `rate`, then `rate` per second', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 10, () => now);
    let taken = 0;
    for (let i = 0; i < 50; i++) if (bucket.take()) taken++;
    expect(taken).toBe(10);
    now += 500;
    taken = 0;
    for (let i = 0; i < 50; i++) if (bucket.take()) taken++;
    expect(taken).toBe(5);
    now += 60_000;
    taken = 0;
    for (let i = 0; i < 50; i++) if (bucket.take()) taken++;
    expect(taken).toBe(10);
  });
});

describe('OfferBook (glare)', () => {
  it('lets the smaller peerId win in either order', () => {
    const book = new OfferBook();
    expect(book.offer('n', 'aaaa', 'bbbb')).toEqual({ relay: true });
    expect(book.offer('n', 'bbbb', 'aaaa')).toEqual({ relay: false });
    const other = new OfferBook();
    expect(other.offer('n', 'bbbb', 'aaaa')).toEqual({ relay: true });
    expect(other.offer('n', 'aaaa', 'bbbb')).toEqual({ relay: true, glareTo: 'bbbb' });
    // The losing offer is settled: the winner's stays pending until answered.
    expect(other.size).toBe(1);
    other.answered('n', 'bbbb', 'aaaa');
    expect(other.size).toBe(0);
  });

  it('does not see glare once an offer is answered, declined, expired, or its peer left', () => {
    let now = 0;
    const book = new OfferBook(30_000, () => now);
    book.offer('n', 'aaaa', 'bbbb');
    book.answered('n', 'bbbb', 'aaaa');
    expect(book.offer('n', 'bbbb', 'aaaa')).toEqual({ relay: true });

    book.offer('n', 'cccc', 'dddd');
    book.forget('n', 'dddd');
    expect(book.offer('n', 'dddd', 'cccc')).toEqual({ relay: true });

    book.offer('n', 'eeee', 'ffff');
    now += 30_001;
    expect(book.offer('n', 'ffff', 'eeee')).toEqual({ relay: true });
    // Pairs in other networks never collide.
    expect(book.offer('m', 'ffff', 'eeee')).toEqual({ relay: true });

    now += 30_001;
    book.sweep();
    expect(book.size).toBe(0);
  });
});
