import { describe, expect, it } from 'vitest';
import { findRoute, formatLayers, missingLayers, type LayerRange, type PeerStats } from '../plan/index.ts';
import { mulberry32 } from './helpers/random.ts';

const held = (entries: Record<string, [number, number]>) =>
  new Map<string, LayerRange>(Object.entries(entries).map(([id, [start, end]]) => [id, { start, end }]));
const allReady = (a: Map<string, LayerRange>, extra: Record<string, Partial<PeerStats>> = {}) =>
  new Map<string, PeerStats>([...a.keys()].map((id) => [id, { ready: true, ...extra[id] }]));

describe('findRoute', () => {
  it('chains peers over the whole model', () => {
    const a = held({ aaaa: [0, 10], bbbb: [10, 20], cccc: [20, 32] });
    expect(findRoute(32, a, allReady(a))).toEqual([
      { peerId: 'aaaa', start: 0, end: 10 },
      { peerId: 'bbbb', start: 10, end: 20 },
      { peerId: 'cccc', start: 20, end: 32 },
    ]);
  });

  it('enters a peer at any boundary inside its range', () => {
    const a = held({ aaaa: [0, 20], bbbb: [12, 32] });
    expect(findRoute(32, a, allReady(a))).toEqual([
      { peerId: 'aaaa', start: 0, end: 20 },
      { peerId: 'bbbb', start: 20, end: 32 },
    ]);
  });

  it('prefers fewer hops, then lower latency and load', () => {
    const a = held({ aaaa: [0, 16], bbbb: [16, 32], whole: [0, 32] });
    expect(findRoute(32, a, allReady(a))).toEqual([{ peerId: 'whole', start: 0, end: 32 }]);
    // The single hop gets slow: two fast hops win.
    expect(findRoute(32, a, allReady(a, { whole: { latencyMs: 100 } }))?.map((h) => h.peerId)).toEqual(['aaaa', 'bbbb']);
    // Busy with 10 sessions at 5 ms each.
    expect(findRoute(32, a, allReady(a, { whole: { sessions: 10 } }))?.map((h) => h.peerId)).toEqual(['aaaa', 'bbbb']);
    expect(findRoute(32, a, allReady(a), {}, { hopMs: 1, perSessionMs: 0 })?.length).toBe(1);
  });

  it('picks the replica with the lower measured latency, and the other when it is excluded', () => {
    const a = held({ aaaa: [0, 32], bbbb: [0, 32] });
    const stats = allReady(a, { aaaa: { latencyMs: 60 }, bbbb: { latencyMs: 6 } });
    expect(findRoute(32, a, stats)?.map((h) => h.peerId)).toEqual(['bbbb']);
    expect(findRoute(32, a, stats, { exclude: ['bbbb'] })?.map((h) => h.peerId)).toEqual(['aaaa']);
    // Latency and load add up: 6 ms plus 12 sessions at 5 ms loses to 60 ms idle.
    const busy = allReady(a, { aaaa: { latencyMs: 60 }, bbbb: { latencyMs: 6, sessions: 12 } });
    expect(findRoute(32, a, busy)?.map((h) => h.peerId)).toEqual(['aaaa']);
  });

  it('spreads over replicas by load and skips peers that are not ready or excluded', () => {
    const a = held({ aaaa: [0, 32], bbbb: [0, 32] });
    expect(findRoute(32, a, allReady(a))?.[0]?.peerId).toBe('aaaa');
    expect(findRoute(32, a, allReady(a, { aaaa: { sessions: 1 } }))?.[0]?.peerId).toBe('bbbb');
    expect(findRoute(32, a, allReady(a, { aaaa: { ready: false } }))?.[0]?.peerId).toBe('bbbb');
    expect(findRoute(32, a, allReady(a), { exclude: ['aaaa'] })?.[0]?.peerId).toBe('bbbb');
    expect(findRoute(32, a, allReady(a), { exclude: ['aaaa', 'bbbb'] })).toBeNull();
    expect(findRoute(32, a, new Map())).toBeNull();
  });

  it('routes a part of the model, stopping a hop early at the end asked', () => {
    const a = held({ aaaa: [0, 16], bbbb: [8, 32] });
    expect(findRoute(32, a, allReady(a), { start: 10, end: 20 })).toEqual([{ peerId: 'bbbb', start: 10, end: 20 }]);
    expect(findRoute(32, a, allReady(a), { start: 4, end: 12 })).toEqual([{ peerId: 'aaaa', start: 4, end: 12 }]);
    expect(findRoute(32, a, allReady(a), { start: 4, end: 12, exclude: ['aaaa'] })).toBeNull();
  });

  it('returns null and names the layers no ready peer holds', () => {
    const a = held({ aaaa: [0, 4], bbbb: [8, 12], cccc: [12, 32] });
    const stats = allReady(a, { cccc: { ready: false } });
    expect(findRoute(32, a, stats)).toBeNull();
    const gaps = missingLayers(32, a, stats);
    expect(gaps).toEqual([
      { start: 4, end: 8 },
      { start: 12, end: 32 },
    ]);
    expect(formatLayers(gaps)).toBe('4-7, 12-31');
    expect(formatLayers([{ start: 3, end: 4 }])).toBe('3');
    expect(missingLayers(32, a, allReady(a), { start: 8, end: 32 })).toEqual([]);
  });

  it('rejects a span outside the model', () => {
    const a = held({ aaaa: [0, 32] });
    expect(() => findRoute(32, a, allReady(a), { start: 5, end: 5 })).toThrow(/ERR_INVALID_ARGUMENT|not inside/);
    expect(() => findRoute(32, a, allReady(a), { end: 33 })).toThrow(/not inside/);
  });

  it('finds a covering chain whenever one exists, deterministically', () => {
    const rand = mulberry32(3);
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(rand() * 24);
      const a = new Map<string, LayerRange>();
      const stats = new Map<string, PeerStats>();
      for (let i = 0; i < 1 + Math.floor(rand() * 8); i++) {
        const start = Math.floor(rand() * n);
        const end = start + 1 + Math.floor(rand() * (n - start));
        a.set(`peer-${i}`, { start, end });
        stats.set(`peer-${i}`, { ready: rand() < 0.8, latencyMs: Math.floor(rand() * 30), sessions: Math.floor(rand() * 3) });
      }
      const hops = findRoute(n, a, stats);
      const gaps = missingLayers(n, a, stats);
      expect(hops === null).toBe(gaps.length > 0);
      expect(findRoute(n, new Map([...a].reverse()), stats)).toEqual(hops);
      if (!hops) continue;
      let at = 0;
      for (const hop of hops) {
        const r = a.get(hop.peerId)!;
        expect(stats.get(hop.peerId)?.ready).toBe(true);
        expect(hop.start).toBe(at);
        expect(hop.start).toBeGreaterThanOrEqual(r.start);
        expect(hop.end).toBeLessThanOrEqual(r.end);
        at = hop.end;
      }
      expect(at).toBe(n);
    }
  });
});
