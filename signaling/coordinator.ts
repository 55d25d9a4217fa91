// The coordinator: which models a network serves and which peer holds which layers. It places
// models on the peers' memory budgets (plan/), tells peers what to load (assign/unassign),
// tracks their readiness from status reports, answers route requests, and re-places on every join,
// leave and capability change. Every operation on a network runs alone, in arrival order, so the
// read-modify-write of its state stays consistent even with an asynchronous store.
import {
  BYTES_PER_MB,
  diffAssignments,
  findRoute,
  formatLayers,
  missingLayers,
  place,
  rangeBytes,
  rebalance,
  routeSpan,
  type LayerRange,
  type PeerStats,
  type PlacementOptions,
  type RouteCosts,
} from '../plan/index.ts';
import {
  AigridError,
  ModelSpecSchema,
  MAX_REPORTED_TOKENS_PER_SECOND,
  STATUS_REPORT_MS,
  type ClientMessage,
  type ModelCoverage,
  type Hop,
  type ModelSpec,
  type PeerServing,
  type ServerMessage,
} from '../protocol/index.ts';
import type { Governance } from './governance.ts';
import type { CoordinatorMetrics, RouteOutcome } from './metrics.ts';
import { placementHookInput, routeHookInput, type ServingHooks } from './policy-hooks.ts';
import type { RecentRoutes } from './recent-routes.ts';
import type { Credits } from './credits.ts';
import type { Reputation } from './reputation.ts';
import type { RegistryStore } from './registry.ts';
import { MemoryServingStore, type PeerServing as PeerStatus, type ServedModel, type ServingStore } from './serving-store.ts';
import { checkSource, type SourcePolicy } from './sources.ts';
import { TICKET_LIFETIME_MS, type RouteTicket, type TicketFields } from '../protocol/index.ts';

export const DEFAULT_MAX_MODELS_PER_NETWORK = 16;

export interface CoordinatorOptions {
  registry: RegistryStore;
  store?: ServingStore;
  /** Delivers a message to a peer of a network (a no-op when it is not connected). */
  send: (network: string, peerId: string, message: ServerMessage) => void;
  broadcast: (network: string, message: ServerMessage) => void;
  log: (line: string) => void;
  /** Who may serve, change and withdraw models on each network. */
  governance: Governance;
  /** What clients found when they checked each key's work. */
  reputation: Reputation;
  maxModelsPerNetwork?: number;
  placement?: PlacementOptions;
  routeCosts?: RouteCosts;
  /** How long a peer that failed to load a model is left out of its placement (default 60 s). */
  failedPeerMs?: number;
  /** Where served models may load weights from (default: https and hub ids only). */
  sources?: SourcePolicy;
  /** Signs the routes it hands out (route tickets); without it routes go unsigned. */
  signTicket?: (fields: TicketFields) => Promise<RouteTicket>;
  /** At most one `models` broadcast per network in this long; later changes go out together (default 50 ms). */
  publishEveryMs?: number;
  /** Membership changes arriving within this long are re-placed together (default 20 ms). */
  replanDelayMs?: number;
  /**
   * Networks whose models were restored after a restart: their placements stand for
   * `recoveryMs` (default 15 s) while the peers come back and report, and are re-placed after.
   */
  restored?: readonly string[];
  recoveryMs?: number;
  /**
   * A ready peer without a status for this long is unhealthy (stuck, or its page frozen): on no
   * route and not counted ready, until it reports again (default DEFAULT_UNHEALTHY_AFTER_MS).
   */
  unhealthyAfterMs?: number;
  /** Counts routes answered and status reports taken, with the load peers report (/metrics). */
  metrics?: CoordinatorMetrics;
  /** Remembers the routes handed out lately (the Network page's map). */
  recentRoutes?: RecentRoutes;
  /** The networks' quota, route and placement policies (policy-hooks.ts); the built-in behaviour without. */
  hooks?: ServingHooks;
  /** Credits (credits.ts): may refuse a client's route, hears the routes handed out, takes the usage an accepted status reports. */
  credits?: Pick<Credits, 'refusesRoute' | 'served' | 'routed'>;
}

export const DEFAULT_FAILED_PEER_MS = 60_000;
/** Long enough for peers to notice a restart and reconnect (their backoff starts under a second). */
export const DEFAULT_RECOVERY_MS = 15_000;
/**
 * Nine report intervals: a page hidden for minutes has its timers held to one wake-up a minute
 * (Chrome's intensive throttling), so a healthy page's reports may come 60 s apart.
 */
export const DEFAULT_UNHEALTHY_AFTER_MS = 9 * STATUS_REPORT_MS;
const DEFAULT_PUBLISH_EVERY_MS = 50;
const DEFAULT_REPLAN_DELAY_MS = 20;

/** A broadcast held back until its network's next slot, and who must hear it even if nothing changed. */
interface PendingPublish {
  message: ServerMessage;
  text: string;
  direct: Reply[];
  timer: ReturnType<typeof setTimeout>;
}

type Reply = (message: ServerMessage) => void;
type StatusMsg = Extract<ClientMessage, { type: 'status' }>;
type RouteMsg = Extract<ClientMessage, { type: 'route' }>;

export class Coordinator {
  private readonly store: ServingStore;
  private readonly locks = new Map<string, Promise<void>>();
  /** The last `models` text each network was sent, so unchanged coverage is not re-broadcast. */
  private readonly lastSent = new Map<string, string>();
  /** When each network's last broadcast went out, and the one held back for its next slot. */
  private readonly lastAt = new Map<string, number>();
  private readonly held = new Map<string, PendingPublish>();
  /** A re-placement gathering the membership changes of a network. */
  private readonly changes = new Map<string, Promise<void>>();
  /** Restored networks whose stored placements stand until the recovery ends. */
  private readonly recovering = new Set<string>();
  private recoveryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly recoveries = new Set<ReturnType<typeof setTimeout>>();

  constructor(private readonly opts: CoordinatorOptions) {
    this.store = opts.store ?? new MemoryServingStore();
    for (const network of opts.restored ?? []) this.recovering.add(network);
    if (this.recovering.size === 0) return;
    // Peers that did not come back by then are re-placed like any that left.
    this.recoveryTimer = setTimeout(() => {
      const networks = [...this.recovering];
      this.recovering.clear();
      for (const network of networks) void this.changed(network).catch((err: unknown) => opts.log(`${network}: re-placement after recovery failed: ${String(err)}`));
    }, opts.recoveryMs ?? DEFAULT_RECOVERY_MS);
    this.recoveryTimer.unref();
  }

  /** Whether a restored network's placements still stand while its peers come back. */
  recovers(network: string): boolean {
    return this.recovering.has(network);
  }

  /** Stops the recovery timers (the server closes). */
  close(): void {
    clearTimeout(this.recoveryTimer);
    for (const timer of this.recoveries) clearTimeout(timer);
  }

  /**
   * This process took over a network whose placements another process made (a shared store,
   * redis-cluster.ts): they stand for recoveryMs while the peers come back, as after a restart.
   */
  recover(network: string): void {
    this.recovering.add(network);
    const timer = setTimeout(() => {
      this.recoveries.delete(timer);
      if (this.recovering.delete(network)) void this.changed(network).catch((err: unknown) => this.opts.log(`${network}: re-placement after recovery failed: ${String(err)}`));
    }, this.opts.recoveryMs ?? DEFAULT_RECOVERY_MS);
    timer.unref();
    this.recoveries.add(timer);
  }

  /**
   * Registers or updates a model for the network; idempotent for an identical spec. A new model
   * needs the network's leave to serve; only the peer that first served a model, or the
   * network's owner, may change it (replication included).
   */
  serve(network: string, peerId: string, spec: ModelSpec, reply: Reply): Promise<void> {
    return this.exclusive(network, async () => {
      const models = await this.store.get(network);
      const existing = models.find((m) => m.spec.modelId === spec.modelId);
      if (existing && sameSpec(existing.spec, spec)) {
        reply(this.modelsMessage(models));
        if (existing.placement?.error) reply(insufficient(existing.placement.error));
        return;
      }
      const { governance } = this.opts;
      if (existing && !governance.mayChange(network, peerId, existing.owner)) {
        return reply(error('ERR_PERMISSION_DENIED', `model ${spec.modelId} on network ${network} was served by ${existing.owner}; only it or the network's owner may change it (serve it under another model id)`, 'serve'));
      }
      if (!existing && !governance.mayServe(network, peerId)) {
        return reply(error('ERR_PERMISSION_DENIED', `network ${network} lets only the peers its owner ${governance.of(network)?.owner} lists serve new models`, 'serve'));
      }
      try {
        checkSource(spec, this.opts.sources ?? { loopbackBound: false });
      } catch (err) {
        return reply(error('ERR_INVALID_ARGUMENT', (err as Error).message, 'serve'));
      }
      const narrowed = governance.refusesSource(network, spec.source, spec.baseUrl);
      if (narrowed) return reply(error('ERR_INVALID_ARGUMENT', `${spec.modelId}: weights from ${JSON.stringify(spec.source.slice(0, 200))} are not allowed on network ${network}: ${narrowed}`, 'serve'));
      const max = this.opts.maxModelsPerNetwork ?? DEFAULT_MAX_MODELS_PER_NETWORK;
      if (!existing && models.length >= max) {
        return reply(error('ERR_INVALID_ARGUMENT', `network ${network} already serves ${max} models, the cap`, 'serve'));
      }
      let model = existing;
      let dropped: string[] = [];
      if (!model) {
        model = { spec, owner: peerId, placement: null, status: new Map() };
        models.push(model);
      } else if (sameSpec({ ...model.spec, replication: spec.replication }, spec)) {
        model.spec = spec; // only replication changed: re-place from what peers hold
      } else {
        // Different weights or shapes: every holder reloads, so start from scratch (failures to
        // load the old spec, e.g. its files at a URL that moved, say nothing of the new one).
        dropped = [...(model.placement?.assignments.keys() ?? [])];
        Object.assign(model, { spec, placement: null, status: new Map(), failed: undefined });
      }
      await this.replan(network, models);
      const placement = model.placement!;
      for (const peerId of dropped) if (!placement.assignments.has(peerId)) this.opts.send(network, peerId, unassign(spec));
      await this.store.set(network, models);
      if (placement.error) reply(insufficient(placement.error));
      if (placement.warning) this.opts.log(`${network}: ${spec.modelId}: ${placement.warning}`);
      this.publish(network, models, reply);
    });
  }

  /** Stops serving a model: its holders unload it. Its owner or the network's owner may. */
  withdraw(network: string, peerId: string, modelId: string, reply: Reply): Promise<void> {
    return this.exclusive(network, async () => {
      const models = await this.store.get(network);
      const model = models.find((m) => m.spec.modelId === modelId);
      if (!model) return reply(error('ERR_UNKNOWN_MODEL', `network ${network} serves no model ${modelId}`, 'withdraw'));
      if (!this.opts.governance.mayChange(network, peerId, model.owner)) {
        return reply(error('ERR_PERMISSION_DENIED', `model ${modelId} on network ${network} was served by ${model.owner}; only it or the network's owner may withdraw it`, 'withdraw'));
      }
      const left = models.filter((m) => m !== model);
      for (const holder of model.placement?.assignments.keys() ?? []) this.opts.send(network, holder, unassign(model.spec));
      this.opts.log(`${network}: ${peerId} withdrew ${modelId}`);
      // The freed memory may complete models that lacked it.
      await this.replan(network, left);
      await this.store.set(network, left);
      this.publish(network, left, reply);
    });
  }

  /** A peer reports on its assignment; only the model and range it was assigned are accepted. */
  status(network: string, peerId: string, msg: StatusMsg, reply: Reply): Promise<void> {
    return this.exclusive(network, async () => {
      const models = await this.store.get(network);
      const model = models.find((m) => m.spec.modelId === msg.modelId);
      const range = model?.placement?.assignments.get(peerId);
      if (!model || !range || range.start !== msg.start || range.end !== msg.end) {
        this.opts.metrics?.reported({ accepted: false });
        const held = range ? `[${range.start}, ${range.end})` : 'nothing';
        const why = `peer ${peerId} holds ${held} of model ${msg.modelId}, not [${msg.start}, ${msg.end})`;
        return reply(error('ERR_INVALID_ARGUMENT', why, 'status'));
      }
      const { state, sessions, tokensServed } = msg;
      const now = Date.now();
      const previous = model.status.get(peerId);
      // A silent peer's report puts it back on routes: a readiness change like any other.
      const wasReady = previous !== undefined && this.readyAt(previous, now);
      const loadCountedAt = this.count(previous, msg, now);
      model.status.set(peerId, { state, sessions, tokensServed, updatedAt: now, ...(msg.load ? { load: msg.load } : {}), ...(loadCountedAt === undefined ? {} : { loadCountedAt }) });
      this.opts.credits?.served(network, peerId, msg, reply);
      if (state === 'failed') {
        // Its layers go to others for a while; a later placement may try it again.
        this.opts.log(`${network}/${peerId} failed to serve ${msg.modelId}: ${msg.detail ?? 'no detail'}; placing its layers elsewhere`);
        (model.failed ??= new Map()).set(peerId, Date.now() + (this.opts.failedPeerMs ?? DEFAULT_FAILED_PEER_MS));
        await this.replan(network, models);
        await this.store.set(network, models);
        return this.publish(network, models);
      }
      await this.store.set(network, models);
      // Load reports are frequent; coverage only changes when readiness does.
      if (wasReady !== (state === 'ready')) this.publish(network, models);
    });
  }

  /**
   * Answers the cheapest chain of ready peers over the layers asked (by the asker's measured latency
   * to each peer and the sessions it last reported), or ERR_NO_ROUTE naming the gaps.
   */
  async route(network: string, client: string, msg: RouteMsg, answer: Reply): Promise<void> {
    const reply: Reply = (m) => {
      this.opts.metrics?.routed(routeOutcome(m));
      answer(m);
    };
    // Outside the network's queue: the quota policy may wait for the sandbox.
    if (this.opts.hooks && !(await this.opts.hooks.quota(network, client, msg.modelId))) {
      return reply(routeError(msg, 'ERR_QUOTA_EXCEEDED', `route ${msg.requestId}: the quota policy of network ${network} refuses ${client} more routes for now`));
    }
    return this.exclusive(network, async () => {
      const model = (await this.store.get(network)).find((m) => m.spec.modelId === msg.modelId);
      if (!model?.placement) {
        return reply(routeError(msg, 'ERR_NO_ROUTE', `route ${msg.requestId}: network ${network} serves no model ${msg.modelId}`));
      }
      const n = model.spec.numLayers;
      const request = { start: msg.start, end: msg.end, exclude: msg.exclude };
      try {
        routeSpan(n, request);
      } catch (err) {
        return reply(routeError(msg, 'ERR_INVALID_ARGUMENT', `route ${msg.requestId}: ${(err as Error).message}`));
      }
      const unpaid = this.opts.credits?.refusesRoute(network, client, model.spec, msg);
      if (unpaid) return reply(routeError(msg, 'ERR_INSUFFICIENT_CREDITS', `route ${msg.requestId}: ${unpaid}`));
      const { assignments } = model.placement;
      const { reputation } = this.opts;
      const now = Date.now();
      let silent = 0;
      const stats = new Map<string, PeerStats>(
        [...model.status].map(([peerId, s]) => {
          if (s.state === 'ready' && !this.healthy(s, now)) silent++;
          // A key whose wrong results outweigh its verified work is on no route, nor a silent peer.
          return [peerId, { ready: this.readyAt(s, now) && !reputation.excluded(peerId), sessions: s.sessions, latencyMs: msg.latencyMs?.[peerId] }];
        }),
      );
      // The route policy's peers are left out as if the asker had excluded them.
      const avoid = (await this.opts.hooks?.route(network, () => routeHookInput(client, msg, n, assignments, stats, (p) => reputation.newcomer(p)))) ?? [];
      if (avoid.length) request.exclude = [...(msg.exclude ?? []), ...avoid];
      let hops: Hop[] | null;
      try {
        hops = msg.around ? spliceRoute(n, assignments, stats, { ...msg, exclude: request.exclude }, this.opts.routeCosts) : findRoute(n, assignments, stats, request, this.opts.routeCosts);
      } catch (err) {
        return reply(routeError(msg, 'ERR_INVALID_ARGUMENT', `route ${msg.requestId}: ${(err as Error).message}`));
      }
      if (hops) {
        const expires = Date.now() + TICKET_LIFETIME_MS;
        const ticket = await this.opts.signTicket?.({ network, modelId: msg.modelId, client, hops, expires });
        const peers = hops.map((h) => h.peerId);
        reputation.routedThrough(client, peers);
        this.opts.recentRoutes?.add(network, msg.modelId, client, hops);
        this.opts.credits?.routed(network, client, msg.modelId, hops);
        const newcomers = peers.filter((p) => reputation.newcomer(p));
        return reply({ type: 'route', requestId: msg.requestId, modelId: msg.modelId, hops, ...(ticket ? { ticket } : {}), ...(newcomers.length ? { newcomers } : {}) });
      }
      if (msg.around) return reply(routeError(msg, 'ERR_NO_ROUTE', `route ${msg.requestId}: no other ready peer covers what ${msg.replace} holds on that route`));
      const gaps = formatLayers(missingLayers(n, assignments, stats, request));
      const ready = [...stats.values()].filter((s) => s.ready).length;
      const bound = this.unhealthyAfterMs;
      const quiet = silent ? `; ${silent} silent for over ${bound >= 1000 ? `${Math.round(bound / 1000)} s` : `${bound} ms`}` : '';
      const why = `route ${msg.requestId}: no ready peer holds layers ${gaps} of model ${msg.modelId} (${ready} of ${assignments.size} assigned peers ready${quiet})`;
      reply(routeError(msg, 'ERR_NO_ROUTE', why));
    });
  }

  /** A peer joined (or reconnected): re-place, and tell it its assignments and the models. */
  joined(network: string, peerId: string): Promise<void> {
    return this.exclusive(network, async () => {
      const models = await this.store.get(network);
      if (models.length === 0) return;
      // A reconnected peer may have restarted: it is loading until it reports, and hears its range again.
      for (const m of models) m.status.delete(peerId);
      await this.replan(network, models, peerId);
      await this.store.set(network, models);
      this.publish(network, models, (message) => this.opts.send(network, peerId, message));
    });
  }

  /**
   * Peers left or changed their capabilities: re-place what lost coverage. Changes that come
   * within replanDelayMs of each other are re-placed once (a flood of updates costs one pass).
   */
  changed(network: string): Promise<void> {
    const gathering = this.changes.get(network);
    if (gathering) return gathering;
    const run = new Promise<void>((resolve) => setTimeout(resolve, this.opts.replanDelayMs ?? DEFAULT_REPLAN_DELAY_MS).unref()).then(() => {
      this.changes.delete(network);
      return this.replanAll(network);
    });
    this.changes.set(network, run);
    return run;
  }

  private replanAll(network: string): Promise<void> {
    return this.exclusive(network, async () => {
      const models = await this.store.get(network);
      if (models.length === 0 || this.recovering.has(network)) return;
      if ((await this.opts.registry.count(network)) === 0) {
        // Nobody is left to serve or ask: forget the network rather than keep its models forever.
        await this.store.delete(network);
        this.forget(network);
        return;
      }
      await this.replan(network, models);
      await this.store.set(network, models);
      this.publish(network, models);
    });
  }

  /** Which peer serves which layers of which model, with its last status, for the HTTP view. */
  async serving(network: string): Promise<PeerServing[]> {
    const out: PeerServing[] = [];
    for (const model of await this.store.get(network)) {
      for (const [peerId, { start, end }] of model.placement?.assignments ?? []) {
        const st = model.status.get(peerId);
        out.push({
          peerId,
          modelId: model.spec.modelId,
          start,
          end,
          state: st?.state ?? 'loading',
          sessions: st?.sessions ?? 0,
          tokensServed: st?.tokensServed ?? 0,
          reportedAt: st?.updatedAt ?? 0,
          ...(st?.load ? { load: st.load } : {}),
        });
      }
    }
    return out;
  }

  /** Per-model coverage of a network, for the HTTP view. */
  async coverage(network: string): Promise<ModelCoverage[]> {
    const now = Date.now();
    return (await this.store.get(network)).map((m) => coverageOf(m, (s) => this.readyAt(s, now)));
  }

  private get unhealthyAfterMs(): number {
    return this.opts.unhealthyAfterMs ?? DEFAULT_UNHEALTHY_AFTER_MS;
  }

  /** Whether a peer's last status is recent enough for it to be taken at its word. */
  private healthy(s: PeerStatus, now: number): boolean {
    return now - s.updatedAt <= this.unhealthyAfterMs;
  }

  /** Ready, and heard from lately: what routes and the coverage count. */
  private readyAt(s: PeerStatus, now: number): boolean {
    return s.state === 'ready' && this.healthy(s, now);
  }

  /**
   * Counts an accepted report: the tokens run since the peer's previous one (capped at what the
   * bound on tokens/s allows in the time between, or in a second), and its load at most once per half report
   * interval, so a peer reporting at the rate limit weighs no more than one on the usual cadence.
   * Returns when the load was last counted.
   */
  private count(previous: PeerStatus | undefined, msg: StatusMsg, now: number): number | undefined {
    const metrics = this.opts.metrics;
    if (!metrics) return undefined;
    // At least a second's worth: two reports handled in one millisecond must not lose the tokens.
    const window = Math.max(1000, now - (previous?.updatedAt ?? now));
    const tokens = previous ? Math.min(Math.max(0, msg.tokensServed - previous.tokensServed), (MAX_REPORTED_TOKENS_PER_SECOND * window) / 1000) : 0;
    const counted = previous?.loadCountedAt;
    const load = msg.load && (counted === undefined || now - counted >= STATUS_REPORT_MS / 2) ? msg.load : undefined;
    metrics.reported({ accepted: true, tokens: Math.floor(tokens), ...(load ? { load } : {}) });
    return load ? now : counted;
  }

  /**
   * Re-places every model of the network in the order they were served, each on what earlier models
   * left of the budgets, and sends assign/unassign to peers whose range changed. `resend` is a peer
   * that hears its assignments even when unchanged (it just connected).
   */
  private async replan(network: string, models: ServedModel[], resend?: string): Promise<void> {
    const peers = await this.opts.registry.list(network);
    // MB that models earlier in the order take of each peer's budget: only their holders appear,
    // so a pass over a large network builds no map of every member.
    const used = new Map<string, number>();
    const take = (peerId: string, mb: number) => used.set(peerId, (used.get(peerId) ?? 0) + mb);
    let members: Set<string> | undefined;
    const member = (peerId: string) => (members ??= new Set(peers.map((p) => p.peerId))).has(peerId);
    for (const model of models) {
      const { spec } = model;
      if (this.recovering.has(network) && model.placement) {
        // Restored: the peers that held it hold it still, and hear their range again on return.
        const held = resend === undefined ? undefined : model.placement.assignments.get(resend);
        if (held) this.opts.send(network, resend!, { type: 'assign', model: spec, start: held.start, end: held.end });
        for (const [peerId, r] of model.placement.assignments) take(peerId, rangeBytes(spec, r) / BYTES_PER_MB);
        continue;
      }
      const now = Date.now();
      for (const [peerId, until] of model.failed ?? []) if (until <= now) model.failed!.delete(peerId);
      // The placement policy's peers hold nothing of this model.
      const avoid = new Set((await this.opts.hooks?.placement(network, () => placementHookInput(spec, peers))) ?? []);
      const planPeers = smallRangesForNewcomers(
        spec,
        peers
          .filter((p) => !model.failed?.has(p.peerId) && !this.opts.reputation.excluded(p.peerId) && runsTask(spec, p.capabilities.tasks) && !avoid.has(p.peerId))
          .map((p) => ({ peerId: p.peerId, memoryBudgetMB: p.capabilities.memoryBudgetMB - (used.get(p.peerId) ?? 0), gflops: p.capabilities.throughput.gflops })),
        (peerId) => this.opts.reputation.newcomer(peerId),
      );
      const before = new Map<string, LayerRange>(model.placement?.assignments ?? []);
      const next = model.placement ? rebalance({ ...model.placement, model: spec }, planPeers, this.opts.placement) : place(spec, planPeers, this.opts.placement);
      if (resend) before.delete(resend);
      const { assign, unassign: lost } = diffAssignments(before, next.assignments);
      for (const [peerId, { start, end }] of assign) {
        model.status.delete(peerId);
        this.opts.send(network, peerId, { type: 'assign', model: spec, start, end });
      }
      for (const peerId of lost) {
        model.status.delete(peerId);
        if (member(peerId)) this.opts.send(network, peerId, unassign(spec));
      }
      model.placement = next;
      for (const [peerId, r] of next.assignments) take(peerId, rangeBytes(spec, r) / BYTES_PER_MB);
    }
  }

  /**
   * Broadcasts the models when their coverage changed; otherwise sends them to `otherwise`, if
   * given. A network gets at most one broadcast per publishEveryMs: a change inside that window is
   * held and sent at its end with whatever else changed, so a peer toggling its state cannot make
   * the server send the model list to every member at the rate it toggles.
   */
  private publish(network: string, models: ServedModel[], otherwise?: Reply): void {
    const message = this.modelsMessage(models);
    const text = JSON.stringify(message);
    const held = this.held.get(network);
    if (held) {
      held.message = message;
      held.text = text;
      if (otherwise) held.direct.push(otherwise);
      return;
    }
    if (this.lastSent.get(network) === text) return otherwise?.(message);
    const every = this.opts.publishEveryMs ?? DEFAULT_PUBLISH_EVERY_MS;
    const wait = (this.lastAt.get(network) ?? -Infinity) + every - performance.now();
    if (wait <= 0) return this.broadcastModels(network, message, text);
    const timer = setTimeout(() => this.flush(network), wait);
    timer.unref();
    this.held.set(network, { message, text, direct: otherwise ? [otherwise] : [], timer });
  }

  private flush(network: string): void {
    const held = this.held.get(network);
    if (!held) return;
    this.held.delete(network);
    if (this.lastSent.get(network) !== held.text) return this.broadcastModels(network, held.message, held.text);
    for (const reply of held.direct) reply(held.message);
  }

  private broadcastModels(network: string, message: ServerMessage, text: string): void {
    this.lastSent.set(network, text);
    this.lastAt.set(network, performance.now());
    this.opts.broadcast(network, message);
  }

  private forget(network: string): void {
    this.opts.recentRoutes?.forget(network);
    clearTimeout(this.held.get(network)?.timer);
    this.held.delete(network);
    this.lastSent.delete(network);
    this.lastAt.delete(network);
  }

  private modelsMessage(models: ServedModel[]): ServerMessage {
    const now = Date.now();
    return { type: 'models', models: models.map((m) => coverageOf(m, (s) => this.readyAt(s, now))) };
  }

  private exclusive(network: string, task: () => Promise<void>): Promise<void> {
    const run = (this.locks.get(network) ?? Promise.resolve()).then(task);
    const tail = run.catch(() => {});
    this.locks.set(network, tail);
    void tail.then(() => {
      if (this.locks.get(network) === tail) this.locks.delete(network);
    });
    return run;
  }
}

/** A pipeline block goes only to peers that run its task; layers go to any peer. */
function runsTask(spec: ModelSpec, tasks: readonly string[] | undefined): boolean {
  return !spec.pipeline || (tasks ?? []).includes(spec.pipeline.task);
}

function coverageOf(model: ServedModel, ready: (s: PeerStatus) => boolean): ModelCoverage {
  const n = model.spec.numLayers;
  const readyCount = new Array<number>(n).fill(0);
  for (const [peerId, r] of model.placement?.assignments ?? []) {
    const s = model.status.get(peerId);
    if (!s || !ready(s)) continue;
    for (let l = r.start; l < r.end; l++) readyCount[l]!++;
  }
  return { model: model.spec, assigned: model.placement?.coverage ?? new Array<number>(n).fill(0), ready: readyCount };
}

function routeOutcome(m: ServerMessage): RouteOutcome {
  if (m.type === 'route') return 'ok';
  return m.type === 'error' && m.code === 'ERR_NO_ROUTE' ? 'no_route' : 'error';
}

function sameSpec(a: ModelSpec, b: ModelSpec): boolean {
  return Object.keys(ModelSpecSchema.shape).every((k) => a[k as keyof ModelSpec] === b[k as keyof ModelSpec]);
}

function unassign(spec: ModelSpec): ServerMessage {
  return { type: 'unassign', modelId: spec.modelId };
}

function insufficient(err: AigridError): ServerMessage {
  return error('ERR_INSUFFICIENT_MEMORY', err.message, 'serve');
}

function error(code: AigridError['code'], message: string, ref: string): ServerMessage {
  return { type: 'error', code, message, ref };
}

/** An error answering one route request: it names the request, so the asker settles that one. */
function routeError(msg: RouteMsg, code: AigridError['code'], message: string): ServerMessage {
  return { type: 'error', code, message, ref: 'route', requestId: msg.requestId };
}

/**
 * The route `msg.around` with `msg.replace`'s hop swapped for ready peers covering the same layers
 * (not the replaced peer, nor `msg.exclude`): what a client replays a session on to check that
 * hop. Null when no other peer covers them; throws when `around` is not a route through peers
 * that hold those layers now.
 */
function spliceRoute(n: number, assignments: ReadonlyMap<string, LayerRange>, stats: ReadonlyMap<string, PeerStats>, msg: RouteMsg, costs?: RouteCosts): Hop[] | null {
  const around = msg.around!;
  let at = 0;
  for (const hop of around) {
    const held = assignments.get(hop.peerId);
    if (hop.start !== at || hop.end <= hop.start || !held || held.start > hop.start || held.end < hop.end) {
      throw new Error(`around is not a route over layers the coordinator assigned (hop ${hop.peerId} [${hop.start}, ${hop.end}))`);
    }
    at = hop.end;
  }
  if (at !== n) throw new Error(`around covers layers [0, ${at}), not the model's ${n}`);
  const index = around.findIndex((h) => h.peerId === msg.replace);
  if (index < 0) throw new Error(`peer ${msg.replace} is not on the route to replace`);
  const { start, end } = around[index]!;
  const exclude = [...(msg.exclude ?? []), msg.replace!];
  const middle = findRoute(n, assignments, stats, { start, end, exclude }, costs);
  return middle && [...around.slice(0, index), ...middle, ...around.slice(index + 1)];
}

/** The most of a model a newcomer holds while established keys can hold every copy. */
export const NEWCOMER_LAYER_SHARE = 0.25;

/**
 * Caps newcomers (keys with little verified work) to small ranges when the established keys
 * alone have room for every copy of the model: a new key then holds a quarter of the layers at
 * most, so its mistakes or lies touch few routes while it earns its record. In a network of new
 * keys nothing changes.
 */
function smallRangesForNewcomers<P extends { peerId: string; memoryBudgetMB: number }>(spec: ModelSpec, peers: P[], newcomer: (peerId: string) => boolean): P[] {
  const layerMB = spec.layerBytes / BYTES_PER_MB;
  const copies = (p: P) => Math.min(spec.numLayers, Math.floor(p.memoryBudgetMB / layerMB));
  const established = peers.filter((p) => !newcomer(p.peerId)).reduce((n, p) => n + copies(p), 0);
  if (established < spec.numLayers * spec.replication) return peers;
  const cap = Math.max(1, Math.ceil(spec.numLayers * NEWCOMER_LAYER_SHARE)) * layerMB;
  return peers.map((p) => (newcomer(p.peerId) ? { ...p, memoryBudgetMB: Math.min(p.memoryBudgetMB, cap) } : p));
}
