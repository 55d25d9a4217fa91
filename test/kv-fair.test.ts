// KV eviction shared fairly among clients: one client opening sessions without end can push out
// only its own once it holds its share, and a newcomer below its share takes room only from
// clients above theirs. Without owners it is the plain LRU it always was.
import { describe, expect, it } from 'vitest';
import { KvSessions } from '../client/model/kv-sessions.ts';
import type { KvStore } from '../client/model/backend/types.ts';

/** Room for `slots` sessions; `owners` says whose each session is. */
function table(slots: number, owners: Map<string, string> | null) {
  const destroyed: string[] = [];
  const kv = new KvSessions({
    budgetBytes: slots * 100,
    sessionBytes: 100,
    create: (id) => [{ destroy: () => destroyed.push(id) } as unknown as KvStore],
    ownerOf: owners ? (id) => owners.get(id) : undefined,
  });
  return { kv, destroyed };
}

describe('fair KV eviction', () => {
  it('a flooding client evicts only its own sessions once it holds its share', () => {
    const owners = new Map<string, string>();
    const { kv, destroyed } = table(8, owners);
    for (let i = 0; i < 3; i++) {
      owners.set(`b${i}`, 'bob');
      kv.create(`b${i}`);
    }
    for (let i = 0; i < 200; i++) {
      owners.set(`a${i}`, 'mallory');
      kv.create(`a${i}`);
    }
    // Bob's three sessions (under his share of 4) survive 200 of Mallory's.
    expect(kv.ids().filter((id) => id.startsWith('b'))).toEqual(['b0', 'b1', 'b2']);
    expect(destroyed.some((id) => id.startsWith('b'))).toBe(false);
    expect(kv.lookup('a0')).toBe('evicted');
  });

  it('a newcomer below its share takes room from clients above theirs, oldest first', () => {
    const owners = new Map<string, string>();
    const { kv } = table(4, owners);
    for (const id of ['a0', 'a1', 'a2', 'b0']) {
      owners.set(id, id[0]!);
      kv.create(id);
    }
    owners.set('c0', 'c');
    kv.create('c0'); // shares: 4 slots / 3 owners = 1 each; only a is over
    expect(kv.ids()).toEqual(['a1', 'a2', 'b0', 'c0']);
    owners.set('c1', 'c');
    kv.create('c1'); // c now holds its share: it makes room from its own sessions only
    expect(kv.ids()).toEqual(['a1', 'a2', 'b0', 'c1']);
    expect(kv.lookup('c0')).toBe('evicted');
  });

  it('refuses rather than evict a session within its client\'s share, or one in flight', () => {
    const owners = new Map<string, string>([['a0', 'a'], ['b0', 'b'], ['c0', 'c']]);
    const { kv } = table(2, owners);
    kv.create('a0');
    kv.create('b0');
    // Three owners, two slots: c's share is 1 and it holds 0, but nobody is over a share of 1.
    expect(() => kv.create('c0')).toThrow(expect.objectContaining({ code: 'ERR_KV_BUDGET' }));
    owners.set('a1', 'a');
    (kv.peek('a0')!).busy = 1;
    expect(() => kv.create('a1')).toThrow(expect.objectContaining({ code: 'ERR_KV_BUDGET' }));
  });

  it('without owners, evicts least recently used first, as before', () => {
    const { kv } = table(3, null);
    for (const id of ['x', 'y', 'z']) kv.create(id);
    kv.lookup('x');
    kv.create('w');
    expect(kv.ids()).toEqual(['z', 'x', 'w']);
    expect(kv.lookup('y')).toBe('evicted');
  });
});
