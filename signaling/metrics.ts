// What the signaling server exposes on /metrics (Prometheus text, prom-client): its peers, the
// models it places and their coverage, routes handed out, verdicts and accusations heard, policy
// failures, credits moved, and the load serving peers report. One Registry per server (several run in one test
// process); the process's own metrics live in one registry shared by the servers of a process.
// No label comes from remote input unbounded: no network, model or peer names, only enums and
// the policy hooks below, capped.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { type LoadReport, type ModelCoverage, type PeerInfo, type PeerServing } from '../protocol/index.ts';
import type { Verdict } from './reputation.ts';
import type { CreditMetrics } from './credits.ts';
import type { EntryKind } from './ledger.ts';

export type RouteOutcome = 'ok' | 'no_route' | 'error';
export type AccusationOutcome = 'convicted' | 'repeat' | 'refused' | 'ignored';

/** What the coordinator counts: the routes it answers and the status reports it takes. */
export interface CoordinatorMetrics {
  routed(outcome: RouteOutcome): void;
  /** A status report refused (not for the peer's assignment) or accepted, with its tokens and load. */
  reported(report: { accepted: false } | { accepted: true; tokens: number; load?: LoadReport }): void;
}

/** Where the gauges are read from at each scrape (the server's stores). */
export interface MetricsSources {
  networks(): Promise<string[]>;
  peers(network: string): Promise<PeerInfo[]>;
  coverage(network: string): Promise<ModelCoverage[]>;
  serving(network: string): Promise<PeerServing[]>;
  /** A serving peer without a status for this long counts as silent (the coordinator's bound). */
  unhealthyAfterMs: number;
}

/** Distinct policy hook labels kept; later names count as `other`. */
export const MAX_POLICY_HOOKS = 32;
const HOOK_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,47}$/;

const KINDS = ['browser', 'node', 'extension'] as const;
const BACKENDS = ['webgpu', 'cpu'] as const;
const SERVING_STATES = ['loading', 'ready', 'failed', 'silent'] as const;

let processRegistry: Registry | undefined;

/** The process's metrics (CPU, memory, event loop, GC), set up once: their observers are per process. */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export class SignalingMetrics implements CoordinatorMetrics, CreditMetrics {
  /** This server's own series. */
  readonly registry = new Registry();
  private readonly exposed: Registry;
  private readonly hooks = new Set<string>();
  /** A scrape in progress: concurrent scrapes share its pass over the stores. */
  private refreshing: Promise<void> | undefined;

  private readonly networks: Gauge;
  private readonly peers: Gauge<'kind' | 'backend'>;
  private readonly models: Gauge<'coverage'>;
  private readonly modelLayers: Gauge;
  private readonly layerCopies: Gauge<'state'>;
  private readonly assignments: Gauge<'state'>;
  private readonly routes: Counter<'outcome'>;
  private readonly reports: Counter<'outcome'>;
  private readonly tokens: Counter;
  private readonly verdictCount: Counter<'result'>;
  private readonly accusations: Counter<'outcome'>;
  private readonly policyFailures: Counter<'hook'>;
  private readonly credits: Counter<'entry'>;
  private readonly tokensPerSecond: Histogram;
  private readonly hopLatency: Histogram;
  private readonly firstToken: Histogram;
  private readonly utilisation: Histogram;

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry];
    this.networks = new Gauge({ name: 'aigrid_networks', help: 'Networks with at least one peer.', registers });
    this.peers = new Gauge({ name: 'aigrid_peers', help: 'Peers joined, by kind and compute backend.', labelNames: ['kind', 'backend'], registers });
    this.models = new Gauge({
      name: 'aigrid_models',
      help: 'Models served, by coverage: complete (every layer has a ready peer), partial, none.',
      labelNames: ['coverage'],
      registers,
    });
    this.modelLayers = new Gauge({ name: 'aigrid_model_layers', help: 'Layers of all models served.', registers });
    this.layerCopies = new Gauge({
      name: 'aigrid_layer_copies',
      help: 'Layer copies placed on peers (assigned) and held by ready, reporting peers (ready).',
      labelNames: ['state'],
      registers,
    });
    this.assignments = new Gauge({
      name: 'aigrid_serving_assignments',
      help: 'Assigned peer ranges by last status; silent: ready but no status within the bound (left out of routes).',
      labelNames: ['state'],
      registers,
    });
    this.routes = new Counter({ name: 'aigrid_routes_total', help: 'Route requests answered, by outcome.', labelNames: ['outcome'], registers });
    this.reports = new Counter({
      name: 'aigrid_status_reports_total',
      help: 'Status reports taken (accepted) or refused as not for the peer\'s assignment.',
      labelNames: ['outcome'],
      registers,
    });
    this.tokens = new Counter({ name: 'aigrid_tokens_served_total', help: 'Tokens serving peers report running through their layers (once per hop); rate() is tokens/s.', registers });
    this.verdictCount = new Counter({ name: 'aigrid_verdicts_total', help: 'Verdicts clients sent on the hops they checked, by result.', labelNames: ['result'], registers });
    this.accusations = new Counter({
      name: 'aigrid_accusations_total',
      help: 'Accusations judged: convicted, repeat (already counted in the window), refused (evidence did not hold), ignored (a forger).',
      labelNames: ['outcome'],
      registers,
    });
    this.policyFailures = new Counter({ name: 'aigrid_policy_failures_total', help: 'Network policy hooks that failed, by hook.', labelNames: ['hook'], registers });
    this.credits = new Counter({
      name: 'aigrid_credits_total',
      help: 'Credits in the ledgers, by entry: earn (peers paid by clients), spend (clients paying; equals earn), mint (free-mode work), grant.',
      labelNames: ['entry'],
      registers,
    });
    const perReport = ' (one observation per peer per report interval)';
    this.tokensPerSecond = new Histogram({
      name: 'aigrid_peer_tokens_per_second',
      help: `Tokens per second serving peers report over their load window${perReport}.`,
      buckets: [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000],
      registers,
    });
    this.hopLatency = new Histogram({
      name: 'aigrid_hop_latency_seconds',
      help: `Median decode pass at a hop, as serving peers time it${perReport}.`,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.firstToken = new Histogram({
      name: 'aigrid_hop_time_to_first_token_seconds',
      help: `Median first pass (prefill) of a session at a hop, its share of time to first token, as serving peers time it${perReport}.`,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.utilisation = new Histogram({
      name: 'aigrid_peer_utilisation',
      help: `Share of the load window serving peers report a pass running${perReport}.`,
      buckets: [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1],
      registers,
    });
    // Every series of a fixed label set exists from the start, so rate() sees the first increment.
    for (const outcome of ['ok', 'no_route', 'error']) this.routes.inc({ outcome }, 0);
    for (const outcome of ['accepted', 'refused']) this.reports.inc({ outcome }, 0);
    for (const result of ['verified', 'wrong', 'timeout']) this.verdictCount.inc({ result }, 0);
    for (const outcome of ['convicted', 'repeat', 'refused', 'ignored']) this.accusations.inc({ outcome }, 0);
    for (const entry of ['earn', 'spend', 'mint', 'grant']) this.credits.inc({ entry }, 0);
    this.exposed = Registry.merge([this.registry, processMetrics()]);
  }

  get contentType(): string {
    return this.exposed.contentType;
  }

  /** The exposition text: gauges read from the stores now, counters and histograms as counted. */
  async text(): Promise<string> {
    await (this.refreshing ??= this.refresh().finally(() => (this.refreshing = undefined)));
    return this.exposed.metrics();
  }

  routed(outcome: RouteOutcome): void {
    this.routes.inc({ outcome });
  }

  reported(report: { accepted: false } | { accepted: true; tokens: number; load?: LoadReport }): void {
    if (!report.accepted) return void this.reports.inc({ outcome: 'refused' });
    this.reports.inc({ outcome: 'accepted' });
    if (report.tokens > 0) this.tokens.inc(report.tokens);
    const { load } = report;
    if (!load) return;
    this.tokensPerSecond.observe(load.tokensPerSecond);
    this.utilisation.observe(load.utilisation);
    if (load.hopLatencyMs !== undefined) this.hopLatency.observe(load.hopLatencyMs / 1000);
    if (load.firstTokenMs !== undefined) this.firstToken.observe(load.firstTokenMs / 1000);
  }

  /** A client's verdicts, as received (reputation.ts decides which count). */
  verdicts(verdicts: readonly Verdict[]): void {
    for (const { result } of verdicts) this.verdictCount.inc({ result });
  }

  /** Credits a ledger entry moved or minted. */
  credited(kind: EntryKind, amount: number): void {
    this.credits.inc({ entry: kind }, amount);
  }

  accusation(outcome: AccusationOutcome): void {
    this.accusations.inc({ outcome });
  }

  /** A policy hook failed. Hook names are the policy code's; a malformed or excess name counts as `other`. */
  onPolicyFailure(hook: string): void {
    if (!this.hooks.has(hook) && HOOK_NAME.test(hook) && this.hooks.size < MAX_POLICY_HOOKS) this.hooks.add(hook);
    this.policyFailures.inc({ hook: this.hooks.has(hook) ? hook : 'other' });
  }

  /** One pass over every network's members and models; aggregates only, so the series stay few. */
  private async refresh(): Promise<void> {
    const networks = await this.sources.networks();
    const peers = new Map<string, number>();
    const models = { complete: 0, partial: 0, none: 0 };
    const copies = { assigned: 0, ready: 0 };
    const states = Object.fromEntries(SERVING_STATES.map((s) => [s, 0])) as Record<(typeof SERVING_STATES)[number], number>;
    let layers = 0;
    let live = 0;
    const silentBefore = Date.now() - this.sources.unhealthyAfterMs;
    for (const network of networks) {
      const [members, coverage, serving] = await Promise.all([this.sources.peers(network), this.sources.coverage(network), this.sources.serving(network)]);
      if (members.length > 0) live++;
      for (const { capabilities: c } of members) {
        const key = `${c.kind} ${c.throughput.backend}`;
        peers.set(key, (peers.get(key) ?? 0) + 1);
      }
      for (const m of coverage) {
        layers += m.model.numLayers;
        const readyLayers = m.ready.filter((r) => r > 0).length;
        models[readyLayers === m.model.numLayers ? 'complete' : readyLayers > 0 ? 'partial' : 'none']++;
        for (const a of m.assigned) copies.assigned += a;
        for (const r of m.ready) copies.ready += r;
      }
      for (const s of serving) states[s.state === 'ready' && s.reportedAt < silentBefore ? 'silent' : s.state]++;
    }
    this.networks.set(live);
    for (const kind of KINDS) for (const backend of BACKENDS) this.peers.set({ kind, backend }, peers.get(`${kind} ${backend}`) ?? 0);
    for (const [coverage, n] of Object.entries(models)) this.models.set({ coverage }, n);
    this.modelLayers.set(layers);
    for (const [state, n] of Object.entries(copies)) this.layerCopies.set({ state }, n);
    for (const [state, n] of Object.entries(states)) this.assignments.set({ state }, n);
  }
}
