// Where a client's routes come from: the coordinator (over signaling), or a fixed list of
// alternatives. Either way a failed peer is excluded from the next route asked for.
import type { Mesh } from '../mesh/mesh.ts';
import type { Route, SignalingClient } from '../mesh/signaling-client.ts';
import { AigridError, describeRoute, MAX_LATENCY_ENTRIES, MAX_LATENCY_MS, type Hop, type ModelCoverage } from '../../protocol/index.ts';

/**
 * A chain of hops covering the model that avoids the excluded peers (with the coordinator's ticket
 * when it chose it); rejects ERR_NO_ROUTE when there is none.
 */
export type RouteSource = ((exclude: readonly string[]) => Promise<Route>) & {
  /**
   * For spot-checks: `route` with `peer`'s hop swapped for other peers covering its layers (none
   * of `exclude`). Only a source that can ask the coordinator has it.
   */
  replacing?: (route: readonly Hop[], peer: string, exclude: readonly string[]) => Promise<Route>;
  /**
   * After a refusal with ERR_NO_ROUTE: where the layers of `range` (default: the whole model) stand
   * now (see layerOutlook). Only a source that sees the coordinator's coverage has it.
   */
  outlook?: (range?: LayerRange) => Promise<LayerOutlook>;
};

/**
 * 'unserved': some layer has no assigned peer (memory short, model withdrawn): no route will come
 * by waiting. 'loading': every layer is assigned and some assigned peer is not ready yet: a route
 * may come once it is. 'ready': every assigned peer is ready: the refusal came from the asker's own
 * exclusions, or from peers that became ready since.
 */
export type LayerOutlook = 'unserved' | 'loading' | 'ready';

export interface LayerRange {
  start: number;
  end: number;
}

/** The outlook of `range`'s layers by a model's coverage (assigned and ready peers per layer). */
export function layerOutlook(coverage: ModelCoverage | undefined, range?: LayerRange): LayerOutlook {
  if (!coverage) return 'unserved';
  const { assigned, ready } = coverage;
  const start = Math.max(0, range?.start ?? 0);
  const end = Math.min(assigned.length, range?.end ?? assigned.length);
  if (end <= start) return 'unserved';
  let outlook: LayerOutlook = 'ready';
  for (let l = start; l < end; l++) {
    const a = assigned[l] ?? 0;
    if (a === 0) return 'unserved';
    if ((ready[l] ?? 0) < a) outlook = 'loading';
  }
  return outlook;
}

/** The first of the given routes that avoids every excluded peer. */
export function explicitRoutes(routes: readonly (readonly Hop[])[]): RouteSource {
  return async (exclude) => {
    const avoid = new Set(exclude);
    const route = routes.find((hops) => hops.every((h) => !avoid.has(h.peerId)));
    if (!route) {
      const tried = routes.map((r) => describeRoute(r)).join('; ');
      throw new AigridError('ERR_NO_ROUTE', `every given route passes a failed peer (${[...avoid].join(', ')}): ${tried}`);
    }
    return { hops: route.map((h) => ({ ...h })) };
  };
}

/** What a latency probe needs of a link: whether it is open, and one round trip over it. */
export interface PingableLink {
  readonly open: boolean;
  ping(): Promise<number>;
}

export interface PeerLatencyOptions {
  /** The link to a peer, if there is one (e.g. `(id) => mesh.link(id)`); only open links are pinged. */
  link: (peerId: string) => PingableLink | undefined;
  /** Peers that could be on a route besides those of earlier routes (e.g. `() => mesh.connectedPeers()`). */
  candidates?: () => Iterable<string>;
  /** How long a measurement is reused before the peer is pinged again (default 30 s). */
  ttlMs?: number;
  /** How long one ping may take before it is given up (default 500 ms). */
  timeoutMs?: number;
  now?: () => number;
}

/**
 * Round trips to peers that could be on a route, measured with a ping over links already open and
 * cached for ttlMs, so a route request costs at most one round of pings, and usually none.
 */
export class PeerLatency {
  private readonly cache = new Map<string, { ms: number; at: number }>();
  /** Peers of earlier routes, most recent last. */
  private readonly seen = new Set<string>();
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(private readonly options: PeerLatencyOptions) {}

  /** Remembers the peers of a route as candidates for later measurements. */
  observe(hops: readonly Hop[]): void {
    for (const { peerId } of hops) {
      this.seen.delete(peerId);
      this.seen.add(peerId);
    }
    while (this.seen.size > MAX_LATENCY_ENTRIES) this.seen.delete(this.seen.values().next().value!);
  }

  /** Records a round trip measured some other way (e.g. from frames already exchanged). */
  record(peerId: string, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.cache.set(peerId, { ms: Math.min(ms, MAX_LATENCY_MS), at: this.now() });
  }

  /** Measures candidates whose measurement is missing or stale; answers at most 64 fresh ones, in ms. */
  async measure(exclude: readonly string[] = []): Promise<Record<string, number>> {
    const avoid = new Set(exclude);
    const peers = [...new Set([...(this.options.candidates?.() ?? []), ...this.seen])].filter((p) => !avoid.has(p)).slice(0, MAX_LATENCY_ENTRIES);
    await Promise.all(peers.filter((p) => !this.fresh(p)).map((p) => this.ping(p)));
    const out: Record<string, number> = {};
    for (const p of peers) {
      const hit = this.cache.get(p);
      if (hit && this.fresh(p)) out[p] = Math.round(hit.ms * 1000) / 1000;
    }
    return out;
  }

  private fresh(peerId: string): boolean {
    const hit = this.cache.get(peerId);
    return hit !== undefined && this.now() - hit.at < (this.options.ttlMs ?? 30_000);
  }

  private ping(peerId: string): Promise<void> {
    const running = this.inflight.get(peerId);
    if (running) return running;
    const link = this.options.link(peerId);
    if (!link?.open) return Promise.resolve();
    let resolveTimeout!: (v: undefined) => void;
    const timeout = new Promise<undefined>((resolve) => (resolveTimeout = resolve));
    const timer = setTimeout(() => resolveTimeout(undefined), this.options.timeoutMs ?? 500);
    const done = Promise.race([link.ping().catch(() => undefined), timeout])
      .then((ms) => {
        if (ms !== undefined) this.record(peerId, ms);
      })
      .finally(() => {
        clearTimeout(timer);
        this.inflight.delete(peerId);
      });
    this.inflight.set(peerId, done);
    return done;
  }

  private now(): number {
    return (this.options.now ?? performance.now.bind(performance))();
  }
}

export interface SignalingRoutesOptions {
  timeoutMs?: number;
  /** Measures peers so the coordinator can prefer the fast ones; without it, routes go by load alone. */
  latency?: PeerLatency;
}

/** Routes chosen by the coordinator, asked for over the signaling connection. */
export function signalingRoutes(signaling: SignalingClient, modelId: string, options: SignalingRoutesOptions = {}): RouteSource {
  const { latency, timeoutMs } = options;
  const source: RouteSource = async (exclude) => {
    const avoid = [...exclude].slice(0, 64);
    const latencyMs = latency ? await latency.measure(avoid) : undefined;
    const route = await patiently(() =>
      signaling.requestRoute(modelId, {
        exclude: avoid,
        timeoutMs,
        ...(latencyMs && Object.keys(latencyMs).length ? { latencyMs } : {}),
      }),
    );
    latency?.observe(route.hops);
    return route;
  };
  source.replacing = (route, peer, exclude) =>
    patiently(() => signaling.requestRoute(modelId, { around: route.map(({ peerId, start, end }) => ({ peerId, start, end })), replace: peer, exclude: [...exclude].slice(0, 64), timeoutMs }));
  source.outlook = async (range) => layerOutlook((await signaling.listModels(timeoutMs)).find((m) => m.model.modelId === modelId), range);
  return source;
}

/** Routes from the coordinator, with round trips to the mesh's linked peers measured and sent along. */
export function meshRoutes(mesh: Mesh, modelId: string, options: { timeoutMs?: number } = {}): RouteSource {
  const latency = new PeerLatency({ link: (id) => mesh.link(id), candidates: () => mesh.connectedPeers() });
  return signalingRoutes(mesh.signaling, modelId, { ...options, latency });
}

/** Route asks past the server's rate are refused, not queued: such an ask waits and asks again. */
const RATE_RETRIES = 5;

async function patiently<T>(ask: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await ask();
    } catch (err) {
      if ((err as AigridError).code !== 'ERR_RATE_LIMITED' || attempt >= RATE_RETRIES) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt * (0.5 + Math.random())));
    }
  }
}
