// What the coordinator remembers of the routes it handed out, for the Network page's map: per
// network the last MAX_RECENT_ROUTES routes of the last RECENT_ROUTE_MS, each with at most
// MAX_RECENT_ROUTE_HOPS hops. Only ids and layer ranges are kept (never a ticket), and the number
// of networks is capped, so a flood of route requests or of networks costs a fixed amount.
import type { Hop, PeerServing } from '../protocol/index.ts';
import { MAX_RECENT_ROUTE_HOPS, MAX_RECENT_ROUTES, RECENT_ROUTE_MS, type RecentRoute, type RouteLink, type RoutesView } from '../protocol/routes-view.ts';

/** Networks with routes remembered at once; the one whose last route is oldest goes first. */
export const MAX_ROUTE_NETWORKS = 1024;

interface Kept {
  at: number;
  modelId: string;
  client: string;
  hops: Hop[];
  hopsLeftOut: number;
}

export class RecentRoutes {
  /** Per network, oldest first; a Map keeps insertion order, so its first key is the stalest network. */
  private readonly byNetwork = new Map<string, Kept[]>();

  constructor(private readonly now: () => number = Date.now) {}

  add(network: string, modelId: string, client: string, hops: readonly Hop[]): void {
    const at = this.now();
    const kept = this.fresh(network, at) ?? [];
    kept.push({ at, modelId, client, hops: hops.slice(0, MAX_RECENT_ROUTE_HOPS).map(({ peerId, start, end }) => ({ peerId, start, end })), hopsLeftOut: Math.max(0, hops.length - MAX_RECENT_ROUTE_HOPS) });
    if (kept.length > MAX_RECENT_ROUTES) kept.splice(0, kept.length - MAX_RECENT_ROUTES);
    // Re-inserted so the network moves to the back of the eviction order.
    this.byNetwork.delete(network);
    this.byNetwork.set(network, kept);
    while (this.byNetwork.size > MAX_ROUTE_NETWORKS) this.byNetwork.delete(this.byNetwork.keys().next().value!);
  }

  /** The network's recent routes, the most recent first. */
  list(network: string): RecentRoute[] {
    return (this.fresh(network, this.now()) ?? [])
      .map(({ at, modelId, client, hops, hopsLeftOut }) => ({ at, modelId, client, hops: hops.map((h) => ({ ...h })), ...(hopsLeftOut ? { hopsLeftOut } : {}) }))
      .reverse();
  }

  /** The network is gone (its last peer left). */
  forget(network: string): void {
    this.byNetwork.delete(network);
  }

  /** The routes still young enough, the old ones dropped; undefined when none are left. */
  private fresh(network: string, now: number): Kept[] | undefined {
    const kept = this.byNetwork.get(network);
    if (!kept) return undefined;
    const first = kept.findIndex((r) => now - r.at <= RECENT_ROUTE_MS);
    if (first < 0) {
      this.byNetwork.delete(network);
      return undefined;
    }
    if (first > 0) kept.splice(0, first);
    return kept;
  }
}

/**
 * The HTTP view: each hop with the latency its peer last reported for the route's model (from
 * the coordinator's serving view), and the links the routes use: client to first hop, hop to
 * hop, last hop back to the client.
 */
export function routesView(network: string, routes: readonly RecentRoute[], serving: readonly PeerServing[]): RoutesView {
  const latency = new Map<string, number>();
  for (const s of serving) if (s.load?.hopLatencyMs !== undefined) latency.set(`${s.modelId}\n${s.peerId}`, s.load.hopLatencyMs);
  const links = new Map<string, RouteLink>();
  const link = (from: string, to: string) => {
    if (from === to) return;
    const key = `${from}\n${to}`;
    const known = links.get(key);
    if (known) known.routes++;
    else links.set(key, { from, to, routes: 1 });
  };
  const shown = routes.map((route) => {
    const hops = route.hops.map((hop) => {
      const ms = latency.get(`${route.modelId}\n${hop.peerId}`);
      return ms === undefined ? hop : { ...hop, latencyMs: ms };
    });
    const path = [route.client, ...hops.map((h) => h.peerId), route.client];
    for (let i = 1; i < path.length; i++) link(path[i - 1]!, path[i]!);
    return { ...route, hops };
  });
  return { network, routes: shown, links: [...links.values()] };
}
