// The simulation's invariants on a small network (npm run sim runs the 10,000-peer version): its
// re-placement matches the real Coordinator's change for change, budgets hold, routes are whole
// chains of ready peers, the population and delays are seeded, and the token-time model adds up.
import { describe, expect, it } from 'vitest';
import { BYTES_PER_MB, coverageOf, rangeBytes } from '../plan/index.ts';
import type { PeerInfo, ServerMessage } from '../protocol/index.ts';
import { Coordinator } from '../signaling/coordinator.ts';
import { Governance } from '../signaling/governance.ts';
import { MemoryRegistry } from '../signaling/registry.ts';
import { Reputation } from '../signaling/reputation.ts';
import { mulberry32 } from './helpers/random.ts';
import {
  HOP_OVERHEAD_MS,
  LLAMA3_70B,
  LLAMA3_8B,
  aggregateTokS,
  clientHeadMs,
  computeMs,
  layerBytes,
  timeToFirstTokenMs,
  tokenTime,
  transferMs,
  type SimClient,
} from './sim/model.ts';
import { SimNetwork, specOf } from './sim/network.ts';
import { LAN_MS, Population, WAN_MS, delayMs, type SimPeer } from './sim/peers.ts';

const NETWORK = 'sim';
const SEED = 3;
const spec70 = specOf('llama-3-70b-q4', LLAMA3_70B.layers, LLAMA3_70B.hidden, layerBytes(LLAMA3_70B), 2);
const spec8 = specOf('llama-3-8b-q4', LLAMA3_8B.layers, LLAMA3_8B.hidden, layerBytes(LLAMA3_8B), 2);

function info(p: SimPeer): PeerInfo {
  return {
    peerId: p.peerId,
    capabilities: { kind: 'browser', gpu: null, memoryBudgetMB: p.memoryBudgetMB, throughput: { gflops: p.gflops, backend: 'webgpu' } },
    joinedAt: 0,
  };
}

/** The simulated network and a real Coordinator fed the same peers and the same changes. */
async function twin(count: number) {
  const population = new Population(SEED, Math.ceil(count / 4));
  const peers = population.many(count);
  const registry = new MemoryRegistry();
  const governance = new Governance(peers[0]!.peerId);
  governance.joined(NETWORK, peers[0]!.peerId);
  const coordinator = new Coordinator({
    registry,
    send: (_n: string, _p: string, _m: ServerMessage) => {},
    broadcast: () => {},
    log: () => {},
    governance,
    reputation: new Reputation(),
    replanDelayMs: 0,
  });
  for (const p of peers) await registry.add(NETWORK, info(p));
  const net = new SimNetwork();
  net.add(peers);
  for (const spec of [spec70, spec8]) {
    await coordinator.serve(NETWORK, peers[0]!.peerId, spec, () => {});
    net.serve(spec);
  }
  const same = async () => {
    const real = (await coordinator.serving(NETWORK)).map((s) => `${s.modelId} ${s.peerId} ${s.start}-${s.end}`).sort();
    const sim = net.models.flatMap((m) => [...m.placement!.assignments].map(([id, r]) => `${m.spec.modelId} ${id} ${r.start}-${r.end}`)).sort();
    expect(real.length).toBeGreaterThan(20);
    expect(sim).toEqual(real);
  };
  return { population, peers, registry, coordinator, net, same };
}

describe('simulation', () => {
  it('re-places as the real Coordinator does, change for change, and keeps every budget', async () => {
    const { population, registry, coordinator, net, same } = await twin(28);
    await same();
    const rand = mulberry32(SEED);
    const ids = [...net.members.keys()].slice(1); // the owner stays
    for (let i = 0; i < 16; i++) {
      if (i % 2 === 0) {
        const [id] = ids.splice(Math.floor(rand() * ids.length), 1);
        await registry.remove(NETWORK, id!);
        await coordinator.changed(NETWORK);
        net.leave(id!);
      } else {
        const p = population.next();
        ids.push(p.peerId);
        await registry.add(NETWORK, info(p));
        await coordinator.joined(NETWORK, p.peerId);
        net.join(p);
      }
      await same();
      const used = new Map<string, number>();
      for (const m of net.models) {
        const p = m.placement!;
        expect(p.coverage).toEqual(coverageOf(m.spec.numLayers, p.assignments.values()));
        for (const [id, r] of p.assignments) {
          expect(net.members.has(id)).toBe(true);
          used.set(id, (used.get(id) ?? 0) + rangeBytes(m.spec, r) / BYTES_PER_MB);
        }
      }
      for (const [id, mb] of used) expect(mb).toBeLessThanOrEqual(net.members.get(id)!.memoryBudgetMB + 1e-6);
    }
  });

  it('routes through ready peers only, as one chain over every layer', async () => {
    const { net } = await twin(28);
    const model = net.models[0]!;
    const client: SimClient = { peerId: 'client', site: -1, bandwidthGBs: 50, uplinkMbps: 50 };
    const latency = (id: string) => 2 * delayMs(SEED, client, net.members.get(id)!);
    expect(net.route(model, latency)).toBeNull(); // nothing has loaded yet
    net.now = Math.max(...model.readyAt.values());
    const route = net.route(model, latency)!;
    let at = 0;
    for (const hop of route) {
      const held = model.placement!.assignments.get(hop.peerId)!;
      expect(hop.start).toBe(at);
      expect(held.start).toBeLessThanOrEqual(hop.start);
      expect(held.end).toBeGreaterThanOrEqual(hop.end);
      expect(net.ready(model, hop.peerId)).toBe(true);
      at = hop.end;
    }
    expect(at).toBe(model.spec.numLayers);
    // A leave takes its ranges away at once; the readiness of what the others hold is untouched.
    const gone = route[0]!.peerId;
    net.leave(gone);
    const next = net.route(model, latency);
    expect(next?.some((h) => h.peerId === gone) ?? false).toBe(false);
  });

  it('draws the same population and delays from the same seed', () => {
    const a = new Population(9, 5).many(50);
    const b = new Population(9, 5).many(50);
    expect(a).toEqual(b);
    expect(new Set(a.map((p) => p.peerId)).size).toBe(50);
    for (const p of a) for (const q of a.slice(0, 10)) {
      const d = delayMs(9, p, q);
      expect(d).toBe(delayMs(9, q, p));
      if (p === q) expect(d).toBe(0);
      else if (p.site === q.site) expect(d >= LAN_MS[0] && d <= LAN_MS[1]).toBe(true);
      else expect(d >= WAN_MS[0] && d <= WAN_MS[1]).toBe(true);
    }
    const browsers = new Population(9, 5).many(20, 'browser');
    for (const p of browsers) expect(p.memoryBudgetMB >= 2048 && p.memoryBudgetMB <= 4096).toBe(true);
  });

  it('adds up token times from their parts', () => {
    // ~40 GB a copy: 80 layers of ~475 MB (Q4_K weights and the KV share).
    expect((layerBytes(LLAMA3_70B) * 80) / 1e9).toBeGreaterThan(39);
    expect((layerBytes(LLAMA3_70B) * 80) / 1e9).toBeLessThan(41);
    const peers = new Population(4, 100).many(3, 'browser');
    const byId = new Map(peers.map((p) => [p.peerId, p]));
    const client: SimClient = { peerId: 'client', site: -1, bandwidthGBs: 50, uplinkMbps: 50 };
    const route = [
      { peerId: peers[0]!.peerId, start: 0, end: 30 },
      { peerId: peers[1]!.peerId, start: 30, end: 55 },
      { peerId: peers[2]!.peerId, start: 55, end: 80 },
    ];
    const t = tokenTime(LLAMA3_70B, route, byId, client, 512, SEED);
    expect(t.totalMs).toBeCloseTo(t.computeMs + t.linkMs + t.headMs, 9);
    const compute = route.reduce((s, h) => s + computeMs(LLAMA3_70B, byId.get(h.peerId)!, h.end - h.start, 1, 512) + HOP_OVERHEAD_MS, 0);
    expect(t.computeMs).toBeCloseTo(compute, 9);
    const ends = [client, ...peers, client];
    const links = ends.slice(1).reduce((s, to, i) => s + delayMs(SEED, ends[i]!, to) + transferMs(LLAMA3_70B, ends[i]!.uplinkMbps, 1), 0);
    expect(t.linkMs).toBeCloseTo(links, 9);
    expect(t.headMs).toBeCloseTo(clientHeadMs(LLAMA3_70B, client), 9);
    // One session aggregates to its own rate; sessions that share a route batch: more tokens/s, less than linear.
    const one = aggregateTokS(LLAMA3_70B, [route], [client], byId, 512, SEED);
    expect(one.tokS).toBeCloseTo(1000 / t.totalMs, 9);
    const four = aggregateTokS(LLAMA3_70B, [route, route, route, route], [client, client, client, client], byId, 512, SEED);
    expect(four.tokS).toBeGreaterThan(one.tokS);
    expect(four.tokS).toBeLessThanOrEqual(4 * one.tokS + 1e-9);
    // A prompt in one chunk crosses the hops one after another; in chunks, the hops overlap.
    const whole = timeToFirstTokenMs(LLAMA3_70B, route, byId, client, 64, 64, SEED);
    let sequential = transferMs(LLAMA3_70B, client.uplinkMbps, 64);
    route.forEach((h, i) => {
      const p = byId.get(h.peerId)!;
      sequential += delayMs(SEED, ends[i]!, p) + computeMs(LLAMA3_70B, p, h.end - h.start, 64, 32, 1) + HOP_OVERHEAD_MS + transferMs(LLAMA3_70B, p.uplinkMbps, 64);
    });
    sequential += delayMs(SEED, peers[2]!, client) + clientHeadMs(LLAMA3_70B, client);
    expect(whole).toBeCloseTo(sequential, 6);
    expect(timeToFirstTokenMs(LLAMA3_70B, route, byId, client, 512, 16, SEED)).toBeLessThan(timeToFirstTokenMs(LLAMA3_70B, route, byId, client, 512, 512, SEED));
  });
});
