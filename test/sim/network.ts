// The coordinator's state for one network, driven the way signaling/coordinator.ts drives plan/:
// on every change all models are re-placed in the order they were served, each on what earlier
// models left of the budgets (replan), and a peer whose range changed reloads it. Readiness is
// modelled: a peer is ready for a model once its range's bytes came in on its downlink.
// Not modelled here: the newcomer cap (every key is new in a fresh network, so the coordinator
// leaves budgets alone), peers marked failed, and keys excluded for wrong results.
import {
  BYTES_PER_MB,
  diffAssignments,
  findRoute,
  place,
  rangeBytes,
  rebalance,
  type LayerRange,
  type PeerStats,
  type Placement,
  type PlacementOptions,
  type RouteCosts,
} from '../../plan/index.ts';
import type { Hop, ModelSpec } from '../../protocol/index.ts';
import type { SimPeer } from './peers.ts';

export interface SimModel {
  spec: ModelSpec;
  placement: Placement | null;
  /** peerId -> simulated time (s) its current range is loaded. */
  readyAt: Map<string, number>;
}

export interface ReplanStats {
  /** Wall time of the re-placement pass (every model), ms. */
  ms: number;
  /** CPU time of the pass, ms (this process's user + system time: what a loaded machine's wall time hides). */
  cpuMs: number;
  /** Of which each model's place/rebalance call, in serving order (wall time). */
  modelMs: number[];
  /** assign messages the pass sent (a new or changed range: a reload). */
  assigned: number;
  unassigned: number;
  /** Bytes the reassigned peers load. */
  reloadBytes: number;
}

export class SimNetwork {
  /** Members in join order, as the registry lists them. */
  readonly members = new Map<string, SimPeer>();
  readonly models: SimModel[] = [];
  /** Simulated seconds. */
  now = 0;

  constructor(
    private readonly options: { placement?: PlacementOptions; routeCosts?: RouteCosts } = {},
  ) {}

  serve(spec: ModelSpec): ReplanStats {
    this.models.push({ spec, placement: null, readyAt: new Map() });
    return this.replan();
  }

  join(peer: SimPeer): ReplanStats {
    this.members.set(peer.peerId, peer);
    // A (re)joining peer is loading until it reports, and hears its ranges again.
    for (const m of this.models) m.readyAt.delete(peer.peerId);
    return this.replan(peer.peerId);
  }

  leave(peerId: string): ReplanStats {
    this.members.delete(peerId);
    return this.replan();
  }

  /** Adds peers without re-placing (the initial population; one replan follows). */
  add(peers: Iterable<SimPeer>): void {
    for (const p of peers) this.members.set(p.peerId, p);
  }

  /** Coordinator.replan: every model in serving order on what earlier ones left of the budgets. */
  replan(resend?: string): ReplanStats {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const peers = [...this.members.values()];
    // What earlier models take of each holder's budget, as the coordinator counts it.
    const used = new Map<string, number>();
    const sends: { model: SimModel; assign: [string, LayerRange][]; lost: string[] }[] = [];
    const modelMs: number[] = [];
    for (const model of this.models) {
      const m0 = performance.now();
      const { spec } = model;
      const planPeers = peers.map((p) => ({ peerId: p.peerId, memoryBudgetMB: p.memoryBudgetMB - (used.get(p.peerId) ?? 0), gflops: p.gflops }));
      const before = new Map<string, LayerRange>(model.placement?.assignments ?? []);
      const next = model.placement ? rebalance({ ...model.placement, model: spec }, planPeers, this.options.placement) : place(spec, planPeers, this.options.placement);
      if (resend) before.delete(resend);
      const { assign, unassign: lost } = diffAssignments(before, next.assignments);
      modelMs.push(performance.now() - m0);
      sends.push({ model, assign, lost });
      model.placement = next;
      for (const [peerId, r] of next.assignments) used.set(peerId, (used.get(peerId) ?? 0) + rangeBytes(spec, r) / BYTES_PER_MB);
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    // What the peers do with the messages (outside the timed pass: the server only sends them).
    let assigned = 0;
    let unassigned = 0;
    let reloadBytes = 0;
    for (const { model, assign, lost } of sends) {
      for (const [peerId, r] of assign) {
        const peer = this.members.get(peerId)!;
        const bytes = rangeBytes(model.spec, r);
        reloadBytes += bytes;
        model.readyAt.set(peerId, this.now + (bytes * 8) / (peer.downlinkMbps * 1e6));
        assigned++;
      }
      for (const peerId of lost) {
        model.readyAt.delete(peerId);
        unassigned++;
      }
    }
    return { ms, cpuMs, modelMs, assigned, unassigned, reloadBytes };
  }

  /** Whether the peer holds its range of the model ready at the current time. */
  ready(model: SimModel, peerId: string): boolean {
    const at = model.readyAt.get(peerId);
    return at !== undefined && at <= this.now && this.members.has(peerId);
  }

  /** Per layer: ready copies now. */
  readyCoverage(model: SimModel): number[] {
    const cov = new Array<number>(model.spec.numLayers).fill(0);
    for (const [peerId, r] of model.placement?.assignments ?? []) {
      if (!this.ready(model, peerId)) continue;
      for (let l = r.start; l < r.end; l++) cov[l]!++;
    }
    return cov;
  }

  /**
   * The stats Coordinator.route builds (ready, sessions, the asker's measured latency) and the
   * route findRoute picks on them.
   */
  route(model: SimModel, latencyMs: (peerId: string) => number, sessions: ReadonlyMap<string, number> = new Map(), exclude?: string[]): Hop[] | null {
    const assignments = model.placement?.assignments ?? new Map<string, LayerRange>();
    const stats = new Map<string, PeerStats>();
    for (const peerId of assignments.keys()) {
      stats.set(peerId, { ready: this.ready(model, peerId), sessions: sessions.get(peerId) ?? 0, latencyMs: latencyMs(peerId) });
    }
    return findRoute(model.spec.numLayers, assignments, stats, { exclude }, this.options.routeCosts);
  }
}

/** A ModelSpec for a shape's bytes, as `aigrid serve` would announce it. */
export function specOf(modelId: string, numLayers: number, hiddenSize: number, layerBytes: number, replication: number): ModelSpec {
  return { modelId, source: `https://example.invalid/${modelId}`, numLayers, hiddenSize, layerBytes, weightDtype: 'q4', replication };
}
