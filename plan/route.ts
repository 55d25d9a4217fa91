// Route choice: the cheapest chain of ready peers that carries hidden states from layer boundary
// `start` to boundary `end`. Boundaries 0..n are the nodes; a peer holding [a, b) is an edge from
// every boundary x with a <= x < b to b (or to `end` when b passes it), since the caller can hand it
// hidden states at any boundary inside its range. Boundaries only grow, so the graph is acyclic and
// one pass in boundary order finds the shortest path.
import { AigridError, type Hop } from '../protocol/index.ts';
import type { LayerRange } from './layout.ts';

export interface PeerStats {
  ready: boolean;
  /** Measured round trip to the peer, when known. */
  latencyMs?: number;
  /** Sessions the peer is serving now. */
  sessions?: number;
}

export interface RouteRequest {
  /** First layer to run (default 0). */
  start?: number;
  /** End layer, exclusive (default: the model's numLayers). */
  end?: number;
  /** Peers to avoid, e.g. one that just failed. */
  exclude?: Iterable<string>;
}

export interface RouteCosts {
  /** Fixed cost of each hop (a network transfer and a frame); favours fewer, longer hops. */
  hopMs?: number;
  /** Added per session a peer already serves, so new sessions spread over replicas. */
  perSessionMs?: number;
}

export const DEFAULT_HOP_COST_MS = 20;
export const DEFAULT_SESSION_COST_MS = 5;

interface Edge {
  peerId: string;
  range: LayerRange;
  cost: number;
}

/** The layers [start, end) a route must cover, checked against the model; throws ERR_INVALID_ARGUMENT. */
export function routeSpan(numLayers: number, request: RouteRequest = {}): LayerRange {
  const start = request.start ?? 0;
  const end = request.end ?? numLayers;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > numLayers || start >= end) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `route layers [${start}, ${end}) are not inside [0, ${numLayers}) or empty`);
  }
  return { start, end };
}

/**
 * The cheapest chain of hops over [start, end), or null when some layer has no usable peer.
 * Cost of a hop: hopMs + the peer's latency + perSessionMs x its sessions. Ties go to fewer hops,
 * then to the candidate met first (boundaries ascending, peers by peerId), so equal inputs give
 * equal routes.
 */
export function findRoute(
  numLayers: number,
  assignments: ReadonlyMap<string, LayerRange>,
  stats: ReadonlyMap<string, PeerStats>,
  request: RouteRequest = {},
  costs: RouteCosts = {},
): Hop[] | null {
  const { start, end } = routeSpan(numLayers, request);
  const edges = usable(assignments, stats, request.exclude, costs);
  const size = end - start + 1;
  const dist = new Array<number>(size).fill(Infinity);
  const hops = new Array<number>(size).fill(Infinity);
  const via = new Array<{ from: number; edge: Edge } | undefined>(size);
  dist[0] = 0;
  hops[0] = 0;
  for (let x = start; x < end; x++) {
    const i = x - start;
    if (dist[i] === Infinity) continue;
    for (const edge of edges) {
      if (x < edge.range.start || x >= edge.range.end) continue;
      const j = Math.min(edge.range.end, end) - start;
      const cost = dist[i]! + edge.cost;
      const better = cost < dist[j]! - 1e-9 || (Math.abs(cost - dist[j]!) <= 1e-9 && hops[i]! + 1 < hops[j]!);
      if (!better) continue;
      dist[j] = cost;
      hops[j] = hops[i]! + 1;
      via[j] = { from: i, edge };
    }
  }
  if (dist[size - 1] === Infinity) return null;
  const chain: Hop[] = [];
  for (let j = size - 1; j > 0; ) {
    const step = via[j]!;
    chain.push({ peerId: step.edge.peerId, start: step.from + start, end: j + start });
    j = step.from;
  }
  return chain.reverse();
}

/** Layers of [start, end) that no usable peer holds, as ranges: what a failed route lacks. */
export function missingLayers(
  numLayers: number,
  assignments: ReadonlyMap<string, LayerRange>,
  stats: ReadonlyMap<string, PeerStats>,
  request: RouteRequest = {},
): LayerRange[] {
  const { start, end } = routeSpan(numLayers, request);
  const held = new Array<boolean>(end - start).fill(false);
  for (const { range } of usable(assignments, stats, request.exclude, {})) {
    for (let l = Math.max(range.start, start); l < Math.min(range.end, end); l++) held[l - start] = true;
  }
  const gaps: LayerRange[] = [];
  held.forEach((ok, i) => {
    if (ok) return;
    const last = gaps[gaps.length - 1];
    if (last && last.end === i + start) last.end++;
    else gaps.push({ start: i + start, end: i + start + 1 });
  });
  return gaps;
}

/** "4-7, 12" for [4, 8) and [12, 13): inclusive layer numbers, as people read them. */
export function formatLayers(ranges: readonly LayerRange[]): string {
  return ranges.map((r) => (r.end - r.start === 1 ? `${r.start}` : `${r.start}-${r.end - 1}`)).join(', ');
}

function usable(
  assignments: ReadonlyMap<string, LayerRange>,
  stats: ReadonlyMap<string, PeerStats>,
  exclude: Iterable<string> | undefined,
  costs: RouteCosts,
): Edge[] {
  const skip = new Set(exclude ?? []);
  const hopMs = nonNegative(costs.hopMs ?? DEFAULT_HOP_COST_MS);
  const perSessionMs = nonNegative(costs.perSessionMs ?? DEFAULT_SESSION_COST_MS);
  const edges: Edge[] = [];
  for (const [peerId, range] of assignments) {
    const s = stats.get(peerId);
    if (!s?.ready || skip.has(peerId) || range.end <= range.start) continue;
    const cost = hopMs + nonNegative(s.latencyMs ?? 0) + perSessionMs * nonNegative(s.sessions ?? 0);
    edges.push({ peerId, range, cost });
  }
  return edges.sort((a, b) => (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0));
}

function nonNegative(x: number): number {
  return Number.isFinite(x) && x > 0 ? x : 0;
}
