import { describe, expect, it } from 'vitest';
import {
  BYTES_PER_MB,
  diffAssignments,
  layerCapacity,
  place,
  rangeBytes,
  rebalance,
  type LayerRange,
  type Placement,
  type PlacementPeer,
} from '../plan/index.ts';
import { AigridError } from '../protocol/index.ts';
import { mulberry32 as seeded } from './helpers/random.ts';

const MB = BYTES_PER_MB;
/** 32 layers of 100 MB. */
const model = (replication = 1, numLayers = 32) => ({ modelId: 'm', numLayers, layerBytes: 100 * MB, replication });
const peer = (peerId: string, layers: number, gflops = 10): PlacementPeer => ({ peerId, memoryBudgetMB: layers * 100, gflops });
const ranges = (p: Placement) => Object.fromEntries([...p.assignments].map(([id, r]) => [id, [r.start, r.end]]));
const len = (r: LayerRange | undefined) => (r ? r.end - r.start : 0);

/** Checks what every placement must satisfy: contiguous ranges inside the model and within budget. */
function checkValid(p: Placement, peers: PlacementPeer[]): void {
  for (const [id, r] of p.assignments) {
    const budget = peers.find((q) => q.peerId === id)!.memoryBudgetMB;
    expect(r.start).toBeGreaterThanOrEqual(0);
    expect(r.end).toBeLessThanOrEqual(p.model.numLayers);
    expect(r.end).toBeGreaterThan(r.start);
    expect(len(r)).toBeLessThanOrEqual(layerCapacity(p.model, budget));
  }
  const cov = new Array<number>(p.model.numLayers).fill(0);
  for (const r of p.assignments.values()) for (let l = r.start; l < r.end; l++) cov[l]!++;
  expect(p.coverage).toEqual(cov);
  expect(p.replication).toBe(Math.min(...cov));
}

describe('placement', () => {
  it('counts whole layers per budget', () => {
    expect(layerCapacity(model(), 99)).toBe(0);
    expect(layerCapacity(model(), 100)).toBe(1);
    expect(layerCapacity(model(), 1050)).toBe(10);
    expect(layerCapacity(model(), 1e9)).toBe(32);
    expect(layerCapacity(model(), 0)).toBe(0);
  });

  it('gives faster peers more layers within their budgets', () => {
    const peers = [peer('fast', 32, 100), peer('mid', 32, 50), peer('slow', 32, 10)];
    const p = place(model(1), peers);
    checkValid(p, peers);
    expect(p.replication).toBe(1);
    const [fast, mid, slow] = ['fast', 'mid', 'slow'].map((id) => len(p.assignments.get(id)));
    expect(fast! + mid! + slow!).toBe(32);
    expect(fast).toBeGreaterThan(mid!);
    expect(mid).toBeGreaterThan(slow!);
    // The slow peer still takes a span of at least numLayers / 8, so a chain stays short.
    expect(slow).toBeGreaterThanOrEqual(4);
  });

  it('caps a fast peer at its budget and gives the rest to the others', () => {
    const peers = [peer('fast', 6, 1000), peer('slow', 32, 1)];
    const p = place(model(1), peers);
    checkValid(p, peers);
    expect(len(p.assignments.get('fast'))).toBe(6);
    expect(len(p.assignments.get('slow'))).toBe(26);
    expect(p.replication).toBe(1);
  });

  it('gives nothing to a peer too small for one layer', () => {
    const peers = [peer('big', 32), { peerId: 'tiny', memoryBudgetMB: 99, gflops: 1000 }];
    const p = place(model(1), peers);
    expect(p.assignments.has('tiny')).toBe(false);
    expect(ranges(p)).toEqual({ big: [0, 32] });
  });

  it('reports ERR_INSUFFICIENT_MEMORY with the MB missing', () => {
    const peers = [peer('a', 10), peer('b', 10), { peerId: 'c', memoryBudgetMB: 50, gflops: 1 }];
    const p = place(model(2), peers);
    expect(p.error).toBeInstanceOf(AigridError);
    expect(p.error?.code).toBe('ERR_INSUFFICIENT_MEMORY');
    // 32 layers needed, 20 fit: 12 x 100 MB.
    expect(p.error?.message).toMatch(/1200 MB more memory is needed/);
    expect(p.assignments.size).toBe(0);
    expect(p.replication).toBe(0);
    expect(place(model(1), []).error?.message).toMatch(/3200 MB more/);
  });

  it.each([1, 2, 3])('covers every layer %i times when memory allows', (replication) => {
    const peers = [peer('p1', 20, 30), peer('p2', 16, 20), peer('p3', 12, 10), peer('p4', 32, 40), peer('p5', 8, 5), peer('p6', 20, 25)];
    const p = place(model(replication), peers);
    checkValid(p, peers);
    expect(p.error).toBeUndefined();
    expect(p.warning).toBeUndefined();
    expect(p.replication).toBeGreaterThanOrEqual(replication);
    // Memory is not spent on copies beyond the target: no more than one extra minimum span per layer.
    if (replication < 3) expect(Math.max(...p.coverage)).toBeLessThanOrEqual(replication + 1);
  });

  it('settles for fewer copies when memory only allows that, and says so', () => {
    const peers = [peer('a', 20), peer('b', 20)];
    const p = place(model(3), peers);
    checkValid(p, peers);
    expect(p.error).toBeUndefined();
    expect(p.replication).toBe(1);
    expect(p.warning).toMatch(/at least 1 peer\(s\), fewer than the 3 asked; about 5600 MB more/);
  });

  it('is deterministic and ignores the order of the peers', () => {
    const rand = seeded(7);
    for (let trial = 0; trial < 30; trial++) {
      const peers = Array.from({ length: 2 + Math.floor(rand() * 10) }, (_, i) => peer(`peer-${i}`, 1 + Math.floor(rand() * 32), Math.round(rand() * 100)));
      const spec = model(1 + Math.floor(rand() * 3));
      const a = place(spec, peers);
      const b = place(spec, [...peers].reverse());
      expect(ranges(b)).toEqual(ranges(a));
      expect(ranges(place(spec, peers))).toEqual(ranges(a));
      if (!a.error) {
        checkValid(a, peers);
        expect(a.replication).toBeGreaterThanOrEqual(1);
      }
    }
  });

  it('covers the model whenever capacity adds up, however the budgets are cut', () => {
    const rand = seeded(11);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(rand() * 40);
      const peers = Array.from({ length: 1 + Math.floor(rand() * 8) }, (_, i) => peer(`peer-${i}`, Math.floor(rand() * n) + 1, rand() * 50));
      const spec = model(1 + Math.floor(rand() * 3), n);
      const capacity = peers.reduce((s, q) => s + layerCapacity(spec, q.memoryBudgetMB), 0);
      const p = place(spec, peers);
      if (capacity < n) {
        expect(p.error?.code).toBe('ERR_INSUFFICIENT_MEMORY');
        continue;
      }
      checkValid(p, peers);
      expect(p.replication).toBeGreaterThanOrEqual(1);
    }
  });
});

describe('rebalance', () => {
  const base = [peer('aaaa', 16, 10), peer('bbbb', 16, 10), peer('cccc', 16, 10), peer('dddd', 16, 10)];

  it('a join takes the least-covered layers and moves nobody', () => {
    const before = place(model(1), base.slice(0, 2));
    expect(before.replication).toBe(1);
    const joined = [...base.slice(0, 2), peer('eeee', 8, 10)];
    const after = rebalance(before, joined);
    checkValid(after, joined);
    const { assign, unassign } = diffAssignments(before.assignments, after.assignments);
    expect(assign.map(([id]) => id)).toEqual(['eeee']);
    expect(unassign).toEqual([]);
    const e = after.assignments.get('eeee')!;
    // It lands where coverage was lowest.
    for (let l = e.start; l < e.end; l++) expect(before.coverage[l]).toBe(Math.min(...before.coverage));
  });

  it('a leave only grows peers over the layers that lost coverage', () => {
    const spec = model(2);
    const before = place(spec, base);
    expect(before.replication).toBe(2);
    const left = base.filter((p) => p.peerId !== 'bbbb');
    const after = rebalance(before, left);
    checkValid(after, left);
    expect(after.replication).toBeGreaterThanOrEqual(1);
    const { assign, unassign } = diffAssignments(before.assignments, after.assignments);
    expect(unassign).toEqual(['bbbb']);
    // Peers that changed only grew: every layer they held is still theirs, so nothing reloads.
    for (const [id, r] of assign) {
      const old = before.assignments.get(id)!;
      expect(r.start).toBeLessThanOrEqual(old.start);
      expect(r.end).toBeGreaterThanOrEqual(old.end);
    }
    const lost = before.assignments.get('bbbb')!;
    for (const [, r] of assign) expect(r.end > lost.start && r.start < lost.end).toBe(true);
  });

  it('keeps assignments unchanged when nothing changed', () => {
    const before = place(model(2), base);
    const after = rebalance(before, base);
    expect(diffAssignments(before.assignments, after.assignments)).toEqual({ assign: [], unassign: [] });
  });

  it('keeps what peers hold while memory is short, and heals when a peer returns', () => {
    const spec = model(1);
    const peers = [peer('aaaa', 16), peer('bbbb', 16)];
    const before = place(spec, peers);
    const short = rebalance(before, peers.slice(0, 1));
    expect(short.error?.code).toBe('ERR_INSUFFICIENT_MEMORY');
    expect(short.error?.message).toMatch(/1600 MB more/);
    expect(ranges(short)).toEqual({ aaaa: ranges(before).aaaa });
    const back = rebalance(short, peers);
    expect(ranges(back)).toEqual(ranges(before));
  });

  it('moves peers only when no layout of the kept ranges can cover the model', () => {
    const spec = model(1, 4);
    const peers = [peer('aaaa', 2), peer('bbbb', 2), peer('cccc', 2)];
    const previous: Placement = {
      model: spec,
      assignments: new Map([
        ['aaaa', { start: 0, end: 2 }],
        ['bbbb', { start: 1, end: 3 }],
        ['cccc', { start: 2, end: 4 }],
      ]),
      coverage: [1, 2, 2, 1],
      replication: 1,
    };
    const after = rebalance(previous, peers.filter((p) => p.peerId !== 'cccc'));
    expect(after.replication).toBe(1);
    expect(ranges(after)).toEqual({ aaaa: [0, 2], bbbb: [2, 4] });
  });

  it('trims a range when the peer budget shrinks, and drops a peer that holds no layer any more', () => {
    const spec = model(1, 8);
    const peers = [peer('aaaa', 8), peer('bbbb', 8)];
    const before = place(spec, peers);
    const shrunk = rebalance(before, [peer('aaaa', 8), { peerId: 'bbbb', memoryBudgetMB: 10, gflops: 10 }]);
    expect(shrunk.assignments.has('bbbb')).toBe(false);
    expect(shrunk.replication).toBe(1);
    const full = rebalance(place(spec, [peer('aaaa', 8)]), [peer('aaaa', 3), peer('bbbb', 8)]);
    expect(len(full.assignments.get('aaaa'))).toBeLessThanOrEqual(3);
    expect(full.replication).toBe(1);
  });

  it('rejects duplicate peers, impossible models and bad options', () => {
    expect(() => place(model(1), [peer('aaaa', 1), peer('aaaa', 2)])).toThrow(/listed twice/);
    const many = Array.from({ length: 5000 }, (_, i) => peer(`peer-${i}`, 4));
    expect(() => place(model(1), [...many, peer('peer-4321', 8)])).toThrow(/peer peer-4321 is listed twice/);
    expect(() => place({ numLayers: 0, layerBytes: 1, replication: 1 }, [])).toThrow(AigridError);
    expect(() => place(model(1), many, { spareCopies: -1 })).toThrow(/spareCopies/);
    expect(() => place(model(1), many, { spareCopies: 0.5 })).toThrow(/spareCopies/);
  });

  describe('light models: the head parts count like layers at the ends', () => {
    /** 8 layers of 100 MB; the head (embedding + LM head) takes 250 MB on a peer at either end. */
    const light = (replication = 1) => ({ ...model(replication, 8), light: true, headBytes: 250 * MB });

    it('keeps every end peer within its budget, head included, and still covers every layer', () => {
      const peers = [peer('aaaa', 4), peer('bbbb', 4), peer('cccc', 4), peer('dddd', 4)];
      const p = place(light(), peers);
      expect(p.replication).toBeGreaterThanOrEqual(1);
      for (const [id, r] of p.assignments) {
        expect(rangeBytes(p.model, r)).toBeLessThanOrEqual(peers.find((q) => q.peerId === id)!.memoryBudgetMB * MB);
      }
      const ends = [...p.assignments.values()].filter((r) => r.start === 0 || r.end === 8);
      expect(ends.length).toBeGreaterThan(0);
      for (const r of ends) expect(len(r)).toBeLessThanOrEqual(1); // 400 MB - 250 MB of head leaves one layer
      // Without the head, the same peers would take spans of up to 4 layers at the ends.
      expect(ranges(rebalance(p, peers))).toEqual(ranges(p)); // stable: nothing reloads
      const plain = place(model(1, 8), peers);
      expect(Math.max(...[...plain.assignments.values()].filter((r) => r.start === 0 || r.end === 8).map(len))).toBeGreaterThan(1);
    });

    it('lets peers too small for the head hold middle layers, and names a missing end holder', () => {
      const peers = [peer('aaaa', 2), peer('bbbb', 6), peer('cccc', 6), peer('dddd', 2)];
      const p = place(light(), peers);
      expect(p.error).toBeUndefined();
      expect(p.replication).toBe(1);
      for (const [id, r] of p.assignments) {
        if (r.start === 0 || r.end === 8) expect(['bbbb', 'cccc']).toContain(id); // room for head + layers
        expect(rangeBytes(p.model, r)).toBeLessThanOrEqual(peers.find((q) => q.peerId === id)!.memoryBudgetMB * MB);
      }
      expect([...p.assignments.keys()].filter((id) => id === 'aaaa' || id === 'dddd').length).toBeGreaterThan(0);
      const small = place(light(), [peer('aaaa', 2), peer('cccc', 2), peer('eeee', 2), peer('ffff', 2)]);
      expect(small.error?.code).toBe('ERR_INSUFFICIENT_MEMORY');
      expect(small.error?.message).toMatch(/head parts \(250 MB\)/);
      for (const r of small.assignments.values()) expect(r.start > 0 && r.end < 8).toBe(true);
    });

    it('counts nothing extra for models without light clients', () => {
      expect(rangeBytes(model(1, 8), { start: 0, end: 2 })).toBe(200 * MB);
      expect(rangeBytes(light(), { start: 0, end: 2 })).toBe(450 * MB);
      expect(rangeBytes(light(), { start: 2, end: 4 })).toBe(200 * MB);
    });
  });
});

describe('large networks: only the copies asked and one spare', () => {
  /** 2,000 peers with room for 4-12 layers of 32 at seeded speeds. */
  const crowd = (count = 2000, seed = 5) => {
    const rand = seeded(seed);
    return Array.from({ length: count }, (_, i) => peer(`peer-${String(i).padStart(4, '0')}`, 4 + Math.floor(rand() * 9), Math.round(rand() * 1000) / 10));
  };
  const copies = (p: Placement) => p.coverage.reduce((a, b) => a + b, 0);

  it.each([1, 2, 3])('holds replication %i + 1 copies of minimum spans on the fastest peers, not every peer', (replication) => {
    const peers = crowd();
    const p = place(model(replication), peers);
    checkValid(p, peers);
    expect(p.error).toBeUndefined();
    expect(p.warning).toBeUndefined();
    expect(p.replication).toBeGreaterThanOrEqual(replication);
    // 32 layers, spans of at least 4: (replication + 1) x 32 copies take (replication + 1) x 8 peers.
    expect(p.assignments.size).toBe((replication + 1) * 8);
    expect(copies(p)).toBe((replication + 1) * 32);
    expect(Math.max(...p.coverage)).toBeLessThanOrEqual(replication + 1);
    for (const r of p.assignments.values()) expect(len(r)).toBe(4);
    // The fastest peers are the ones taken.
    const slowestTaken = Math.min(...[...p.assignments.keys()].map((id) => peers.find((q) => q.peerId === id)!.gflops));
    const fasterIdle = peers.filter((q) => !p.assignments.has(q.peerId) && q.gflops > slowestTaken);
    expect(fasterIdle).toEqual([]);
    // The same answer whatever the order of the peers.
    expect(ranges(place(model(replication), [...peers].reverse()))).toEqual(ranges(p));
    // Peers with room for less than a minimum span count for what they hold: more of them are taken.
    const small = peers.map((q, i) => ({ ...q, memoryBudgetMB: (1 + (i % 12)) * 100 }));
    const s = place(model(replication), small);
    checkValid(s, small);
    expect(s.replication).toBeGreaterThanOrEqual(replication);
    expect(copies(s)).toBeGreaterThanOrEqual((replication + 1) * 32);
    expect(copies(s)).toBeLessThan((replication + 1) * 32 + 4);
    expect(s.assignments.size).toBeLessThan(small.length / 10);
  });

  it('spareCopies sets the spare: 0 places just the copies asked, Infinity every peer with room', () => {
    const peers = crowd(200);
    const none = place(model(2), peers, { spareCopies: 0 });
    expect(none.replication).toBe(2);
    expect(copies(none)).toBe(64);
    const all = place(model(2), peers, { spareCopies: Infinity });
    expect(all.assignments.size).toBe(200);
    checkValid(all, peers);
  });

  it('a join or the leave of a peer without a range changes nothing; a holder that leaves is replaced by one idle peer', () => {
    const peers = crowd();
    const spec = model(2);
    const before = place(spec, peers);
    const joined = [...peers, peer('zz-new', 32, 1e6)];
    expect(diffAssignments(before.assignments, rebalance(before, joined).assignments)).toEqual({ assign: [], unassign: [] });
    const idle = peers.find((q) => !before.assignments.has(q.peerId))!;
    const withoutIdle = peers.filter((q) => q !== idle);
    expect(diffAssignments(before.assignments, rebalance(before, withoutIdle).assignments)).toEqual({ assign: [], unassign: [] });
    const holder = [...before.assignments.keys()][5]!;
    const left = peers.filter((q) => q.peerId !== holder);
    const after = rebalance(before, left);
    checkValid(after, left);
    expect(after.replication).toBeGreaterThanOrEqual(2);
    const { assign, unassign } = diffAssignments(before.assignments, after.assignments);
    expect(unassign).toEqual([holder]);
    expect(assign).toHaveLength(1);
    const [newcomer, range] = assign[0]!;
    expect(before.assignments.has(newcomer)).toBe(false);
    expect(range).toEqual(before.assignments.get(holder));
  });

  it('under seeded churn keeps the replication, a bounded set of holders, and never moves a holder', () => {
    const rand = seeded(17);
    let members = crowd(500, 17).map((q, i) => ({ ...q, memoryBudgetMB: (1 + (i % 12)) * 100 }));
    const spec = model(2);
    let p = place(spec, members);
    let next = 0;
    for (let step = 0; step < 200; step++) {
      let leaver: string | undefined;
      if (rand() < 0.5) {
        leaver = members[Math.floor(rand() * members.length)]!.peerId;
        members = members.filter((q) => q.peerId !== leaver);
      } else members = [...members, peer(`new-${next++}`, 1 + Math.floor(rand() * 12), Math.round(rand() * 1000) / 10)];
      const after = rebalance(p, members);
      checkValid(after, members);
      expect(after.replication).toBeGreaterThanOrEqual(2);
      expect(after.assignments.size).toBeLessThanOrEqual(40);
      const { assign, unassign } = diffAssignments(p.assignments, after.assignments);
      expect(unassign).toEqual(leaver && p.assignments.has(leaver) ? [leaver] : []);
      if (!leaver || !p.assignments.has(leaver)) expect(assign).toEqual([]);
      for (const [id, r] of assign) {
        const old = p.assignments.get(id);
        if (old) expect(r.start <= old.start && r.end >= old.end).toBe(true);
      }
      p = after;
    }
  });

  it('takes idle peers when the holders cannot bring a layer up to the target', () => {
    // 8 layers (spans of 1), replication 1: the copies asked and the spare are 16 layers, which 16
    // one-layer holders already hold, but none holds the last layer.
    const spec = model(1, 8);
    const peers = Array.from({ length: 40 }, (_, i) => peer(`peer-${String(i).padStart(2, '0')}`, 1, 40 - i));
    const previous: Placement = {
      model: spec,
      assignments: new Map(peers.slice(0, 16).map((q, i) => [q.peerId, { start: i % 7, end: (i % 7) + 1 }])),
      coverage: [3, 3, 2, 2, 2, 2, 2, 0],
      replication: 0,
    };
    const after = rebalance(previous, peers);
    checkValid(after, peers);
    expect(after.replication).toBe(1);
    const { assign, unassign } = diffAssignments(previous.assignments, after.assignments);
    expect(unassign).toEqual([]);
    // The fastest idle peer takes the uncovered layer; no holder moves.
    expect(assign).toEqual([['peer-16', { start: 7, end: 8 }]]);
  });
});
