// npm run sim: the real placement and routing (plan/: place, rebalance, diffAssignments,
// rangeBytes, findRoute, called as signaling/coordinator.ts calls them, see network.ts) on
// synthetic peers (peers.ts), with modelled token times (model.ts). Seeded: one seed, one answer
// (AIGRID_SIM_SEED, default 1). Two parts:
//  1. A network of 10,000 peers (80% browser tabs of 2-4 GB, 19% desktops of 8-24 GB, 1% servers
//     of 40-80 GB; LAN 1-5 ms inside a site, WAN 20-80 ms across) serving four models in order
//     (Llama-3-70B, 8B, 3.2-1B, 3.1-405B-shaped, Q4). Peers leave and join as Poisson processes
//     (each peer stays 30 min on average, as many join as leave); each change re-places every
//     model as the coordinator does, timed. Reported: ms per change (p50, p99; and per model),
//     reloads per change, coverage (share of models with every layer held), the share of layers
//     with fewer ready copies than asked at the end of the churn (a peer is ready once its range
//     came in on its downlink), and modelled tokens/s per model on the route findRoute picks.
//  2. The mission's case: a Llama-3-70B-shaped Q4 model (80 layers, ~40 GB) on 32 browser-class
//     peers of 2-4 GB, each at its own site (WAN 20-80 ms between any two): single-stream and
//     aggregate tokens/s for replication 1, 2, 3 and 1, 4, 16 sessions, and time to first token of
//     a 512-token prompt sent in chunks of 16, 64 and 256.
// Environment: AIGRID_SIM_PEERS (default 10000), AIGRID_SIM_CHANGES (joins + leaves timed,
// default 400), AIGRID_SIM_SEED. Last line: RESULT {json}.
import { loadavg } from 'node:os';
import type { Hop } from '../../protocol/index.ts';
import { BYTES_PER_MB, DEFAULT_HOP_COST_MS, DEFAULT_MAX_STAGES, DEFAULT_SESSION_COST_MS, DEFAULT_SPARE_COPIES } from '../../plan/index.ts';
import { mulberry32 } from '../helpers/random.ts';
import {
  CLIENT_SPREAD,
  HOP_OVERHEAD_MS,
  KV_TOKENS_PER_LAYER,
  LLAMA3_70B,
  LLAMA3_8B,
  LLAMA31_405B,
  LLAMA32_1B,
  aggregateTokS,
  layerBytes,
  timeToFirstTokenMs,
  tokenTime,
  weightBytesPerLayer,
  headBytes,
  type ModelShape,
  type SimClient,
} from './model.ts';
import { SimNetwork, specOf, type ReplanStats, type SimModel } from './network.ts';
import { CLASSES, LAN_MS, PEERS_PER_SITE, Population, WAN_MS, delayMs, type SimPeer } from './peers.ts';

const SEED = Number(process.env.AIGRID_SIM_SEED ?? 1);
const PEERS = Number(process.env.AIGRID_SIM_PEERS ?? 10_000);
const CHANGES = Number(process.env.AIGRID_SIM_CHANGES ?? 400);
/** Mean time a peer stays, s: with as many joins as leaves, PEERS / this changes per second each way. */
const MEAN_STAY_S = 30 * 60;
const CATALOG: [ModelShape, number][] = [
  [LLAMA3_70B, 3],
  [LLAMA3_8B, 3],
  [LLAMA32_1B, 3],
  [LLAMA31_405B, 2],
];
const CONTEXT = 512;
const PROMPT = 512;
const CHUNKS = [16, 64, 256];
const SESSIONS = [1, 4, 16];
const MISSION_PEERS = 32;
const GB = 1e9;

const log = (line = '') => console.log(line);
const round = (x: number, digits = 2) => Number(x.toFixed(digits));
const pad = (x: unknown, n: number) => String(x).padStart(n);

function percentile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

function specFor(shape: ModelShape, replication: number) {
  return specOf(shape.name, shape.layers, shape.hidden, layerBytes(shape), replication);
}

function clientAt(rand: () => number, site: number, i: number): SimClient {
  const id = `client-${i}-${Math.floor(rand() * 1e9)}`;
  return { peerId: id, site, ...CLIENT_SPREAD };
}

/** What a client measured to each peer: the round trip, twice the one-way delay. */
function latencies(client: SimClient, peers: ReadonlyMap<string, SimPeer>) {
  return (peerId: string) => 2 * delayMs(SEED, client, peers.get(peerId)!);
}

/** Routes for `clients` in turn, each seeing the sessions the earlier ones put on their hops. */
function sessionRoutes(net: SimNetwork, model: SimModel, clients: readonly SimClient[]): Hop[][] | null {
  const sessions = new Map<string, number>();
  const routes: Hop[][] = [];
  for (const c of clients) {
    const r = net.route(model, latencies(c, net.members), sessions);
    if (!r) return null;
    for (const h of r) sessions.set(h.peerId, (sessions.get(h.peerId) ?? 0) + 1);
    routes.push(r);
  }
  return routes;
}

function assumptions(): void {
  log('Assumptions of the token-time model (test/sim/model.ts):');
  log(`  - per hop and layer, a roofline: max(bytes read / memory bandwidth, FLOPs / reported GFLOP/s); bytes = the layer's`);
  log(`    Q4_K weights (4.5 bits/weight) + each row's f32 KV cache at the context; FLOPs = 2 x params + 4 x context x heads x headDim per row`);
  log(`  - per-peer memory bandwidth (GB/s) and GFLOP/s: ${(['browser', 'desktop', 'server'] as const).map((k) => `${k} ${CLASSES[k].bandwidthGBs.join('-')} GB/s, ${CLASSES[k].gflops.join('-')} GFLOP/s`).join('; ')}`);
  log(`  - activations cross each link as f16 (hidden x 2 bytes per token: 16 KiB for hidden 8192) at the sender's uplink`);
  log(`    (${(['browser', 'desktop', 'server'] as const).map((k) => `${k} ${CLASSES[k].uplinkMbps.join('-')} Mbit/s`).join('; ')}), after the link's one-way delay`);
  log(`    (LAN ${LAN_MS.join('-')} ms inside a site, WAN ${WAN_MS.join('-')} ms across; ${PEERS_PER_SITE} peers per site on average in part 1)`);
  log(`  - chain forwarding client -> hop 1 -> ... -> hop k -> client; +${HOP_OVERHEAD_MS} ms per hop for a frame; the client holds the head and reads`);
  log(`    the LM head once per token at ${CLIENT_SPREAD.bandwidthGBs} GB/s (uplink ${CLIENT_SPREAD.uplinkMbps} Mbit/s); the client's latency to each peer, as findRoute sees it, is the round trip`);
  log(`  - routes: findRoute with the coordinator's defaults (${DEFAULT_HOP_COST_MS} ms per hop + round trip + ${DEFAULT_SESSION_COST_MS} ms per session the peer serves); it sees only the`);
  log(`    client's latency to each hop, not the delays between hops nor the peers' speed`);
  log(`  - aggregate: S sessions decode in lockstep, each from its own client; sessions on one peer and range batch (one weight read per step);`);
  log(`    a peer's work per second above 1 s slows its sessions in proportion (an upper bound: perfect batching)`);
  log(`  - prefill: a ${PROMPT}-token prompt in chunks sent back to back; each hop runs one chunk at a time, each uplink carries one at a time`);
  log(`  - layer bytes for placement: weights + a ${KV_TOKENS_PER_LAYER}-token f32 KV share (client/grid/model-spec.ts); a reassigned peer reloads its`);
  log(`    whole range at its downlink (browser ${CLASSES.browser.downlinkMbps.join('-')}, desktop ${CLASSES.desktop.downlinkMbps.join('-')} Mbit/s) and is ready after`);
  log(`  - placement: maxStages ${DEFAULT_MAX_STAGES}, spareCopies ${DEFAULT_SPARE_COPIES} (the defaults); no newcomer caps (every key is new), no failed or excluded peers`);
  log();
}

interface ModelRow {
  name: string;
  replication: number;
  achieved: number;
  holders: number;
  hops: number;
  singleTokS: number;
  singleMs: number;
  computeMs: number;
  linkMs: number;
  aggregateTokS: number;
  ttftMs: number;
}

function modelFigures(net: SimNetwork, model: SimModel, shape: ModelShape, rand: () => number, sites: number, sessions: number): ModelRow {
  const p = model.placement!;
  const client = clientAt(rand, Math.floor(rand() * sites), 0);
  const route = net.route(model, latencies(client, net.members));
  const row: ModelRow = {
    name: shape.name,
    replication: model.spec.replication,
    achieved: p.replication,
    holders: p.assignments.size,
    hops: route?.length ?? 0,
    singleTokS: 0,
    singleMs: NaN,
    computeMs: NaN,
    linkMs: NaN,
    aggregateTokS: 0,
    ttftMs: NaN,
  };
  if (!route) return row;
  const t = tokenTime(shape, route, net.members, client, CONTEXT, SEED);
  Object.assign(row, { singleTokS: 1000 / t.totalMs, singleMs: t.totalMs, computeMs: t.computeMs, linkMs: t.linkMs });
  row.ttftMs = timeToFirstTokenMs(shape, route, net.members, client, PROMPT, 64, SEED);
  const clients = Array.from({ length: sessions }, (_, i) => clientAt(rand, Math.floor(rand() * sites), i + 1));
  const routes = sessionRoutes(net, model, clients);
  if (routes) row.aggregateTokS = aggregateTokS(shape, routes, clients, net.members, CONTEXT, SEED).tokS;
  return row;
}

function part1() {
  const rand = mulberry32(SEED ^ 0x5eed);
  const sites = Math.max(1, Math.round(PEERS / PEERS_PER_SITE));
  const population = new Population(SEED, sites);
  const net = new SimNetwork();
  const initial = population.many(PEERS);
  net.add(initial);
  const kinds = { browser: 0, desktop: 0, server: 0 };
  for (const p of initial) kinds[p.kind]++;
  const totalGB = initial.reduce((s, p) => s + p.memoryBudgetMB * BYTES_PER_MB, 0) / GB;
  log(`Part 1: ${PEERS} peers (${kinds.browser} browser, ${kinds.desktop} desktop, ${kinds.server} server; ${totalGB.toFixed(0)} GB offered) in ${sites} sites`);
  const serveMs: number[] = [];
  for (const [shape, r] of CATALOG) {
    const st = net.serve(specFor(shape, r));
    serveMs.push(st.ms);
    const p = net.models.at(-1)!.placement!;
    log(`  serve ${shape.name.padEnd(18)} ${(layerBytes(shape) / BYTES_PER_MB).toFixed(0).padStart(5)} MB/layer x ${pad(shape.layers, 3)}, replication ${r}: placed in ${st.ms.toFixed(1)} ms on ${p.assignments.size} peers, least copies of a layer ${p.replication}${p.error ? ` (${p.error.message})` : ''}`);
  }
  // Everyone loads what they were given before the churn starts.
  const loaded = Math.max(...net.models.flatMap((m) => [...m.readyAt.values()]));
  log(`  every initial range loaded after ${(loaded / 60).toFixed(1)} simulated min (the slowest downlink)`);
  net.now = loaded;

  // Churn: leaves and joins as two Poisson processes of equal rate.
  const rate = PEERS / MEAN_STAY_S;
  const changes: (ReplanStats & { kind: 'join' | 'leave' })[] = [];
  const ids = [...net.members.keys()];
  const index = new Map(ids.map((id, i) => [id, i]));
  const start = net.now;
  for (let i = 0; i < CHANGES; i++) {
    net.now += -Math.log(1 - rand()) / (2 * rate);
    if (rand() < 0.5 && ids.length > 1) {
      // A uniformly chosen member leaves (swap-remove keeps the pick O(1)).
      const k = Math.floor(rand() * ids.length);
      const id = ids[k]!;
      const last = ids.pop()!;
      if (last !== id) {
        ids[k] = last;
        index.set(last, k);
      }
      index.delete(id);
      changes.push({ ...net.leave(id), kind: 'leave' });
    } else {
      const p = population.next();
      index.set(p.peerId, ids.length);
      ids.push(p.peerId);
      changes.push({ ...net.join(p), kind: 'join' });
    }
  }
  const churnS = net.now - start;
  const ms = changes.map((c) => c.ms);
  const perModel = CATALOG.map((_, i) => changes.map((c) => c.modelMs[i]!));
  const joins = changes.filter((c) => c.kind === 'join');
  const leaves = changes.filter((c) => c.kind === 'leave');
  log();
  log(`  churn: ${CHANGES} changes (${joins.length} joins, ${leaves.length} leaves) over ${churnS.toFixed(0)} simulated s (${(2 * rate).toFixed(1)} changes/s: mean stay ${MEAN_STAY_S / 60} min); load average ${loadavg()[0]!.toFixed(1)} on this machine`);
  const cpu = changes.map((c) => c.cpuMs);
  log(`  re-placement of all ${CATALOG.length} models per change, wall ms: p50 ${percentile(ms, 0.5).toFixed(1).padStart(6)}  p99 ${percentile(ms, 0.99).toFixed(1).padStart(6)}  max ${Math.max(...ms).toFixed(1).padStart(6)}   (joins p50 ${percentile(joins.map((c) => c.ms), 0.5).toFixed(1)}, leaves p50 ${percentile(leaves.map((c) => c.ms), 0.5).toFixed(1)})`);
  log(`                                      CPU ms:  p50 ${percentile(cpu, 0.5).toFixed(1).padStart(6)}  p99 ${percentile(cpu, 0.99).toFixed(1).padStart(6)}  (this process only; the machine is shared)`);
  CATALOG.forEach(([shape], i) => log(`    of which ${shape.name.padEnd(18)} p50 ${percentile(perModel[i]!, 0.5).toFixed(1).padStart(6)}  p99 ${percentile(perModel[i]!, 0.99).toFixed(1).padStart(6)}`));
  const holders = net.models.map((m) => m.placement!.assignments.size);
  log(`  holders per model ${holders.join(', ')} of ${net.members.size} peers: placement takes peers without a range (fastest first) only until`);
  log(`  their minimum spans make replication + ${DEFAULT_SPARE_COPIES} copies, so a change works on the holders; what still grows with the network`);
  log(`  is one pass over the peers per model (budgets, the duplicate check, finding idle peers when a holder left)`);
  const assigned = changes.map((c) => c.assigned);
  const reload = changes.map((c) => c.reloadBytes / GB);
  log(`  ranges (re)assigned per change: p50 ${percentile(assigned, 0.5)}, p99 ${percentile(assigned, 0.99)}, max ${Math.max(...assigned)}; bytes to load per change p50 ${percentile(reload, 0.5).toFixed(2)} GB, p99 ${percentile(reload, 0.99).toFixed(2)} GB`);

  // Coverage and replication at the end of the churn.
  let covered = 0;
  let layers = 0;
  let underAssigned = 0;
  let underReady = 0;
  log();
  log(`  ${'model'.padEnd(18)} ${'ask'.padStart(3)} ${'least'.padStart(5)} ${'holders'.padStart(7)} ${'<ask assigned'.padStart(13)} ${'<ask ready'.padStart(10)} ${'uncovered(ready)'.padStart(16)}`);
  for (const m of net.models) {
    const p = m.placement!;
    const ready = net.readyCoverage(m);
    const r = m.spec.replication;
    const ua = p.coverage.filter((c) => c < r).length;
    const ur = ready.filter((c) => c < r).length;
    const gaps = ready.filter((c) => c === 0).length;
    if (!p.error && p.replication > 0) covered++;
    layers += m.spec.numLayers;
    underAssigned += ua;
    underReady += ur;
    log(`  ${m.spec.modelId.padEnd(18)} ${pad(r, 3)} ${pad(p.replication, 5)} ${pad(p.assignments.size, 7)} ${pad(ua, 13)} ${pad(ur, 10)} ${pad(gaps, 16)}`);
  }
  const coverage = covered / net.models.length;
  const underReplicated = underReady / layers;
  log(`  coverage ${covered}/${net.models.length} models; layers under their replication after churn: ${underAssigned}/${layers} as assigned, ${underReady}/${layers} counting only ready copies`);

  // Tokens/s per model, on the routes findRoute picks for clients at random sites.
  log();
  log(`  ${'model'.padEnd(18)} ${'hops'.padStart(4)} ${'step ms'.padStart(8)} ${'compute'.padStart(8)} ${'links'.padStart(7)} ${'tok/s 1'.padStart(8)} ${'tok/s x16'.padStart(9)} ${'TTFT 512/64'.padStart(11)}`);
  const rows = net.models.map((m, i) => modelFigures(net, m, CATALOG[i]![0], rand, sites, 16));
  for (const r of rows) {
    log(`  ${r.name.padEnd(18)} ${pad(r.hops, 4)} ${pad(r.singleMs.toFixed(0), 8)} ${pad(r.computeMs.toFixed(0), 8)} ${pad(r.linkMs.toFixed(0), 7)} ${pad(r.singleTokS.toFixed(2), 8)} ${pad(r.aggregateTokS.toFixed(1), 9)} ${pad((r.ttftMs / 1000).toFixed(2) + ' s', 11)}`);
  }
  return { ms, cpu, coverage, underReplicated, rows };
}

interface MissionRow {
  peers: number;
  replication: number;
  achieved: number;
  hops: number;
  singleTokS: number;
  stepMs: number;
  computeMs: number;
  linkMs: number;
  aggregate: Record<number, number>;
  ttft: Record<number, number>;
}

/** One placement of the model on `peers` (all ranges loaded) and its modelled figures. */
function missionRow(shape: ModelShape, peers: readonly SimPeer[], replication: number, clients: readonly SimClient[]): MissionRow & { note: string } {
  const net = new SimNetwork();
  net.add(peers);
  net.serve(specFor(shape, replication));
  const model = net.models[0]!;
  net.now = Math.max(0, ...model.readyAt.values());
  const p = model.placement!;
  const route = net.route(model, latencies(clients[0]!, net.members));
  const row: MissionRow = { peers: peers.length, replication, achieved: p.replication, hops: route?.length ?? 0, singleTokS: 0, stepMs: NaN, computeMs: NaN, linkMs: NaN, aggregate: {}, ttft: {} };
  if (route) {
    const t = tokenTime(shape, route, net.members, clients[0]!, CONTEXT, SEED);
    Object.assign(row, { singleTokS: 1000 / t.totalMs, stepMs: t.totalMs, computeMs: t.computeMs, linkMs: t.linkMs });
    for (const c of CHUNKS) row.ttft[c] = timeToFirstTokenMs(shape, route, net.members, clients[0]!, PROMPT, c, SEED);
    for (const s of SESSIONS) {
      const cs = clients.slice(0, s);
      const routes = sessionRoutes(net, model, cs);
      row.aggregate[s] = routes ? aggregateTokS(shape, routes, cs, net.members, CONTEXT, SEED).tokS : 0;
    }
  }
  const note = p.error ? ` ${p.error.message}` : p.warning ? ` (${p.warning})` : '';
  return { ...row, note: `${p.assignments.size} of ${peers.length} peers hold ranges, least copies of a layer ${p.replication}${note}` };
}

function missionTable(rows: readonly MissionRow[]): void {
  log(`  ${'peers'.padStart(5)} ${'repl'.padStart(4)} ${'least'.padStart(5)} ${'hops'.padStart(4)} ${'step ms'.padStart(8)} ${'compute'.padStart(8)} ${'links'.padStart(6)} ${SESSIONS.map((s, i) => `tok/s x${s}`.padStart(i === 2 ? 9 : 8)).join(' ')} ${CHUNKS.map((c) => `TTFT /${c}`.padStart(9)).join(' ')}`);
  for (const r of rows) {
    log(`  ${pad(r.peers, 5)} ${pad(r.replication, 4)} ${pad(r.achieved, 5)} ${pad(r.hops, 4)} ${pad(r.stepMs.toFixed(0), 8)} ${pad(r.computeMs.toFixed(0), 8)} ${pad(r.linkMs.toFixed(0), 6)} ${SESSIONS.map((s, i) => pad((r.aggregate[s] ?? 0).toFixed(2), i === 2 ? 9 : 8)).join(' ')} ${CHUNKS.map((c) => pad(((r.ttft[c] ?? NaN) / 1000).toFixed(1) + ' s', 9)).join(' ')}`);
  }
}

/**
 * The 32 peers under churn (each stays MEAN_STAY_S on average; a fresh browser joins as often as
 * one leaves), sampled every 10 simulated s: the share of samples with every layer ready on some
 * peer, and the mean share of layers with fewer ready copies than asked.
 */
function missionChurn(shape: ModelShape, peers: readonly SimPeer[], population: Population, replication: number, hours: number) {
  const rand = mulberry32(SEED ^ 0xc4a2);
  const net = new SimNetwork();
  net.add(peers);
  net.serve(specFor(shape, replication));
  const model = net.models[0]!;
  net.now = Math.max(0, ...model.readyAt.values());
  const ids = peers.map((p) => p.peerId);
  const rate = peers.length / MEAN_STAY_S;
  const end = net.now + hours * 3600;
  let nextEvent = net.now - Math.log(1 - rand()) / (2 * rate);
  let site = 1000;
  let samples = 0;
  let available = 0;
  let under = 0;
  let events = 0;
  for (let t = net.now; t < end; t += 10) {
    while (nextEvent <= t) {
      net.now = nextEvent;
      if (rand() < 0.5 && ids.length > 1) net.leave(ids.splice(Math.floor(rand() * ids.length), 1)[0]!);
      else {
        const p = population.next('browser', site++);
        ids.push(p.peerId);
        net.join(p);
      }
      events++;
      nextEvent += -Math.log(1 - rand()) / (2 * rate);
    }
    net.now = t;
    const ready = net.readyCoverage(model);
    samples++;
    if (ready.every((c) => c > 0)) available++;
    under += ready.filter((c) => c < replication).length / ready.length;
  }
  return { available: available / samples, underReplicated: under / samples, events, hours };
}

function part2(): { rows: MissionRow[]; churn: ReturnType<typeof missionChurn> } {
  const shape = LLAMA3_70B;
  const rand = mulberry32(SEED ^ 0x70b);
  // Every peer and the client at a site of its own: all links are WAN.
  const population = new Population(SEED ^ 0x32, 1);
  const peers = population.many(MISSION_PEERS, 'browser', (i) => i);
  const offered = peers.reduce((s, p) => s + p.memoryBudgetMB * BYTES_PER_MB, 0);
  const total = layerBytes(shape) * shape.layers;
  log();
  log(`Part 2: ${shape.name} (${shape.layers} layers, hidden ${shape.hidden}, GQA ${shape.heads}/${shape.kvHeads}, intermediate ${shape.intermediate}, vocab ${shape.vocab}):`);
  log(`  ${(weightBytesPerLayer(shape) / BYTES_PER_MB).toFixed(0)} MB of Q4_K weights per layer (${((weightBytesPerLayer(shape) * shape.layers + 2 * headBytes(shape)) / GB).toFixed(1)} GB with embedding and head), ${(layerBytes(shape) / BYTES_PER_MB).toFixed(0)} MB per layer with the KV share: ${(total / GB).toFixed(1)} GB a copy`);
  log(`  on ${MISSION_PEERS} browser peers of 2-4 GB (${(offered / GB).toFixed(1)} GB offered: room for ${(offered / total).toFixed(2)} copies by bytes), each at its own site (WAN 20-80 ms between any two)`);
  const clients = Array.from({ length: Math.max(...SESSIONS) }, (_, i) => clientAt(rand, MISSION_PEERS + i, i));
  const rows: MissionRow[] = [];
  for (const replication of [1, 2, 3]) {
    const row = missionRow(shape, peers, replication, clients);
    log(`  all ${MISSION_PEERS}, replication ${replication}: ${row.note}`);
    rows.push(row);
  }
  // The same peers, but only as many as the copies need (the first in draw order whose layers add
  // up to replication x layers): what replication changes when placement cannot fill spare peers.
  const fewest: MissionRow[] = [];
  const capacity = (p: SimPeer) => Math.min(shape.layers, Math.floor((p.memoryBudgetMB * BYTES_PER_MB) / layerBytes(shape)));
  for (const replication of [1, 2, 3]) {
    let sum = 0;
    let k = 0;
    while (k < peers.length && sum < replication * shape.layers) sum += capacity(peers[k++]!);
    const row = missionRow(shape, peers.slice(0, k), replication, clients);
    log(`  just enough (${k}), replication ${replication}: ${row.note}`);
    fewest.push(row);
  }
  log();
  missionTable([...rows, ...fewest]);
  log(`  (tok/s xS: S sessions together, each from its own client; TTFT /C: time to first token of a ${PROMPT}-token prompt in chunks`);
  log(`  of C tokens, prefill plus the head. Placement takes peers for replication + ${DEFAULT_SPARE_COPIES} copies; where that is more than the 32 hold`);
  log(`  (replication 2 and 3 here), each takes all it has room for and those rows place alike; the last three use only the peers`);
  log(`  the copies need.)`);
  const churn = missionChurn(shape, peers, population, 2, 4);
  log();
  log(`  churn at replication 2 on the 32 peers (mean stay ${MEAN_STAY_S / 60} min, a fresh browser joins as often as one leaves; ${churn.events} changes in ${churn.hours} simulated h;`);
  log(`  a reassigned peer reloads its range at its downlink before it is ready): every layer ready on some peer ${(100 * churn.available).toFixed(1)}% of the time,`);
  log(`  layers with fewer than 2 ready copies ${(100 * churn.underReplicated).toFixed(1)}% on average`);
  return { rows, churn };
}

async function main(): Promise<void> {
  assumptions();
  const t0 = performance.now();
  const one = part1();
  const two = part2();
  const r2 = two.rows.find((r) => r.replication === 2) ?? two.rows[0]!;
  log();
  log(`simulation took ${((performance.now() - t0) / 1000).toFixed(0)} s; the Llama-3-70B figures in RESULT are replication 2 on the ${MISSION_PEERS} browser peers (single stream; 16 sessions aggregate)`);
  const result = {
    peers: PEERS,
    placementMsP50: round(percentile(one.ms, 0.5), 1),
    placementMsP99: round(percentile(one.ms, 0.99), 1),
    coverage: round(one.coverage, 3),
    underReplicatedAfterChurn: round(one.underReplicated, 4),
    llama70bSingleTokS: round(r2.singleTokS, 3),
    llama70bAggregateTokS: round(r2.aggregate[16] ?? 0, 3),
    placementCpuMsP50: round(percentile(one.cpu, 0.5), 1),
    llama70bTtftMsChunk64: Math.round(r2.ttft[64] ?? NaN),
    llama70bAvailableUnderChurn: round(two.churn.available, 4),
  };
  log(`RESULT ${JSON.stringify(result)}`);
}

await main();
