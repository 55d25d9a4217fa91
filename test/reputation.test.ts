// Which verdicts count toward a key's reputation: only about peers the coordinator routed the
// client through, never about the client itself, praise once per minute; a wrong result only by
// conviction on evidence (never from a bare verdict), once per client and key per 10 minutes; a
// client that forged evidence is not heard; and the maps it keeps, keyed by what clients send,
// stay bounded.
import { describe, expect, it } from 'vitest';
import { Reputation } from '../signaling/reputation.ts';

describe('reputation', () => {
  it('counts verdicts only about routed peers, convictions once per window per client, and excludes a key whose wrong results outweigh its work', () => {
    const r = new Reputation();
    const t = 1_000_000;
    // Not routed through yet: nothing counts.
    expect(r.record('client-a', [{ peerId: 'peer-x', result: 'wrong' }], t)).toBe(0);
    r.routedThrough('client-a', ['peer-x', 'client-a'], t);
    // About itself: ignored. Repeated praise within the minute: once.
    expect(r.record('client-a', [{ peerId: 'client-a', result: 'verified' }], t)).toBe(0);
    expect(r.record('client-a', Array.from({ length: 16 }, () => ({ peerId: 'peer-x', result: 'verified' as const })), t)).toBe(1);
    expect(r.record('client-a', [{ peerId: 'peer-x', result: 'verified' }], t + 61_000)).toBe(1);
    expect(r.standing('peer-x')).toEqual({ verified: 2, wrong: 0, timeouts: 0, excluded: false, newcomer: true });
    // A bare `wrong` verdict never counts, however often: only a conviction on evidence does.
    expect(r.record('client-a', [{ peerId: 'peer-x', result: 'wrong' }, { peerId: 'peer-x', result: 'wrong' }], t + 62_000)).toBe(0);
    expect(r.standing('peer-x')).toMatchObject({ wrong: 0, excluded: false });
    // Convictions count once per 10 minutes from one client, never about itself.
    expect(r.convict('client-a', 'client-a', t + 62_000)).toBe(false);
    expect(r.convict('client-a', 'peer-x', t + 62_000)).toBe(true);
    expect(r.convict('client-a', 'peer-x', t + 120_000)).toBe(false);
    expect(r.standing('peer-x')).toMatchObject({ wrong: 1, excluded: true }); // 1 wrong x 5 > 2 verified
    // A forger is not heard for an hour: neither its praise nor its convictions.
    r.forged('client-a', t + 130_000);
    expect(r.convict('client-a', 'peer-x', t + 20 * 60_000)).toBe(false);
    expect(r.ignoring('client-a', t + 59 * 60_000 + 130_000)).toBe(true);
    expect(r.ignoring('client-a', t + 61 * 60_000 + 130_000)).toBe(false);
    // Routes age out: after 10 minutes the client may no longer report on that peer.
    const b = new Reputation();
    b.routedThrough('client-b', ['peer-y'], t);
    expect(b.record('client-b', [{ peerId: 'peer-y', result: 'timeout' }], t + 11 * 60_000)).toBe(0);
  });

  it('keeps its maps bounded however many clients and peers send verdicts', () => {
    const r = new Reputation();
    const peers = Array.from({ length: 300 }, (_, i) => `peer-${i}`);
    r.routedThrough('client-flood', peers);
    const internals = r as unknown as { routed: Map<string, Map<string, number>>; keys: Map<string, unknown>; counted: Map<string, number>; forgers: Map<string, number> };
    expect(internals.routed.get('client-flood')!.size).toBe(256);
    for (let c = 0; c < 10_050; c++) r.routedThrough(`client-${c}`, ['peer-0']);
    expect(internals.routed.size).toBeLessThanOrEqual(10_000);
    for (let c = 0; c < 2_000; c++) {
      const client = `sybil-${c}`;
      r.routedThrough(client, peers.slice(0, 50));
      r.record(client, peers.slice(0, 16).map((peerId) => ({ peerId, result: 'verified' as const })));
      for (const peer of peers.slice(0, 16)) r.convict(client, peer);
    }
    for (let c = 0; c < 10_050; c++) r.forged(`forger-${c}`);
    expect(internals.forgers.size).toBeLessThanOrEqual(10_000);
    expect(internals.counted.size).toBeLessThanOrEqual(100_000);
    expect(internals.keys.size).toBeLessThanOrEqual(100_000);
  });
});
