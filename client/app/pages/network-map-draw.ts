// Draws the Network page's map as SVG: peers as circles on two rings (serving peers outside, in
// the order of the layers they hold, so routes run clockwise; the others inside), the links recent
// routes use as curved edges, and each route as a path with a dot that runs it, each hop taking
// time in proportion to the pass time its peer reported (written on the edge into it). Pure
// layout from its input: the same network draws the same picture.
import type { RecentRoute, RouteLink } from '../../../protocol/routes-view.ts';

export interface MapPeer {
  peerId: string;
  kind: string;
  backend: string;
  /** "vendor architecture", or null without a GPU. */
  gpu: string | null;
  standing: 'established' | 'newcomer' | 'excluded' | 'unknown';
  verified: number;
  wrong: number;
  /** What it serves ("model [a, b) state; ..."), empty when nothing. */
  serving: string;
  /** The lowest layer it holds, for its place on the ring. */
  firstLayer?: number;
  self: boolean;
}

export interface MapInput {
  peers: MapPeer[];
  routes: RecentRoute[];
  links: RouteLink[];
}

/** Peers drawn at most; the rest are counted in a note. */
export const MAX_PEERS_DRAWN = 200;
/** Distinct routes drawn at most (each one animation). */
export const MAX_ROUTES_DRAWN = 16;
/** The dots run this many times slower than the hidden states, so a 20 ms hop can be seen. */
export const SLOWDOWN = 20;
const MIN_HOP_S = 0.25;
const MAX_HOP_S = 4;
/** A hop whose peer has not reported a pass time yet. */
const UNKNOWN_HOP_S = 1;
/** The last hop's results going back to the client. */
const RETURN_S = 0.4;

const W = 960;
const H = 600;
const CX = W / 2;
const CY = H / 2 + 5;
const OUTER = 245;
const INNER = 105;
const NS = 'http://www.w3.org/2000/svg';
const KIND_COLOURS: Record<string, string> = { browser: '#0969da', node: '#8250df', extension: '#bf3989' };
const ROUTE_COLOURS = ['#e16f24', '#1a7f37', '#cf222e', '#0550ae', '#9a6700', '#bf3989'];

interface Point {
  x: number;
  y: number;
}

interface Placed extends Point {
  peer: MapPeer;
  r: number;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, ...children: (Node | string)[]): SVGElementTagNameMap[K] {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

const round = (v: number) => Math.round(v * 10) / 10;
const shortId = (id: string) => (id.length > 8 ? id.slice(0, 8) : id);

/** Which peers are drawn: this tab, peers on routes, serving peers, then the rest by id. */
export function choosePeers(input: MapInput): { drawn: MapPeer[]; leftOut: number } {
  const onRoute = new Set(input.routes.flatMap((r) => [r.client, ...r.hops.map((h) => h.peerId)]));
  const rank = (p: MapPeer) => (p.self ? 0 : onRoute.has(p.peerId) ? 1 : p.firstLayer !== undefined ? 2 : 3);
  const sorted = [...input.peers].sort((a, b) => rank(a) - rank(b) || (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0));
  const drawn = sorted.slice(0, MAX_PEERS_DRAWN);
  return { drawn, leftOut: sorted.length - drawn.length };
}

/** Serving peers on the outer ring from the top, clockwise by first layer; the others inside. */
function layout(peers: MapPeer[]): Map<string, Placed> {
  const byId = (a: MapPeer, b: MapPeer) => (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0);
  let outer = peers.filter((p) => p.firstLayer !== undefined).sort((a, b) => a.firstLayer! - b.firstLayer! || byId(a, b));
  let inner = peers.filter((p) => p.firstLayer === undefined).sort((a, b) => Number(b.self) - Number(a.self) || byId(a, b));
  if (outer.length === 0 || inner.length === 0) [outer, inner] = [[...outer, ...inner], []];
  const placed = new Map<string, Placed>();
  const ring = (ps: MapPeer[], radius: number, turn: number) => {
    const spacing = (2 * Math.PI * radius) / Math.max(ps.length, 1);
    const r = Math.max(3, Math.min(16, spacing * 0.3));
    ps.forEach((peer, i) => {
      const angle = -Math.PI / 2 + turn + (2 * Math.PI * i) / ps.length;
      const at = ps.length === 1 && radius === INNER ? { x: CX, y: CY } : { x: CX + radius * Math.cos(angle), y: CY + radius * Math.sin(angle) };
      placed.set(peer.peerId, { ...at, peer, r });
    });
  };
  ring(outer, OUTER, 0);
  // Half a step round, so an inner peer does not sit on the line from the centre to an outer one.
  ring(inner, INNER, inner.length > 1 ? Math.PI / inner.length : 0);
  return placed;
}

/** The control point of the curved edge from a to b: bent to the left of travel, so b -> a is apart. */
function bend(a: Point, b: Point): Point {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  return { x: (a.x + b.x) / 2 + dy * 0.12, y: (a.y + b.y) / 2 - dx * 0.12 };
}

function curveLength(a: Point, c: Point, b: Point): number {
  let length = 0;
  let prev = a;
  for (let i = 1; i <= 16; i++) {
    const t = i / 16;
    const p = { x: (1 - t) ** 2 * a.x + 2 * (1 - t) * t * c.x + t ** 2 * b.x, y: (1 - t) ** 2 * a.y + 2 * (1 - t) * t * c.y + t ** 2 * b.y };
    length += Math.hypot(p.x - prev.x, p.y - prev.y);
    prev = p;
  }
  return length;
}

/** A reported pass time as the map writes it: "40 ms", "12.5 ms", "? ms" before any report. */
export function latencyText(ms: number | undefined): string {
  if (ms === undefined) return '? ms';
  return `${Number.isInteger(ms) || ms >= 100 ? Math.round(ms) : ms.toFixed(1)} ms`;
}

/** Seconds the dot takes into a hop whose peer reported `ms` per pass. */
export function hopSeconds(ms: number | undefined): number {
  if (ms === undefined) return UNKNOWN_HOP_S;
  return Math.min(MAX_HOP_S, Math.max(MIN_HOP_S, (ms * SLOWDOWN) / 1000));
}

function peerNode(p: Placed, labelled: boolean): SVGGElement {
  const { peer } = p;
  const backendText = peer.backend === 'webgpu' ? 'WebGPU' : peer.backend.toUpperCase();
  const title = [
    `${peer.peerId}${peer.self ? ' (this tab)' : ''}`,
    `${peer.kind} · ${peer.gpu ? `GPU ${peer.gpu}` : 'no GPU'} · runs on ${backendText}`,
    peer.standing === 'unknown' ? 'no reputation yet' : `${peer.standing}: ${peer.verified} verified, ${peer.wrong} wrong`,
    peer.serving ? `serves ${peer.serving}` : 'serves nothing',
  ].join('\n');
  const g = svg('g', {
    class: `map-peer standing-${peer.standing}${peer.self ? ' self' : ''}`,
    'data-peer-id': peer.peerId,
    'data-kind': peer.kind,
    'data-backend': peer.backend,
    'data-gpu': peer.gpu ? 'yes' : 'no',
    'data-standing': peer.standing,
    transform: `translate(${round(p.x)} ${round(p.y)})`,
  });
  g.append(svg('title', {}, title), svg('circle', { r: round(p.r), fill: KIND_COLOURS[peer.kind] ?? '#57606a' }));
  if (p.r >= 7) g.append(svg('text', { class: 'map-backend', 'font-size': round(p.r), dy: round(p.r * 0.36) }, peer.backend === 'webgpu' ? 'G' : 'C'));
  if (labelled) {
    const name = peer.self ? 'this tab' : shortId(peer.peerId);
    const label = svg('text', { class: 'map-label', y: round(p.r + 13) }, name);
    g.append(label);
    const held = /\[(\d+), (\d+)\)/.exec(peer.serving);
    if (held) g.append(svg('text', { class: 'map-label map-layers', y: round(p.r + 25) }, `L${held[1]}–${Number(held[2]) - 1}`));
  }
  return g;
}

/** One row per distinct route (client, model, hops), the most recent first, with how often it was given. */
function distinctRoutes(routes: RecentRoute[]): { route: RecentRoute; times: number }[] {
  const seen = new Map<string, { route: RecentRoute; times: number }>();
  for (const route of routes) {
    const key = [route.client, route.modelId, ...route.hops.map((h) => `${h.peerId}:${h.start}-${h.end}`)].join(' ');
    const known = seen.get(key);
    if (known) known.times++;
    else seen.set(key, { route, times: 1 });
  }
  return [...seen.values()];
}

/** Replaces the SVG's content with the map of `input`; returns what the note under it says. */
export function drawMap(root: SVGSVGElement, input: MapInput): { note: string; routes: { route: RecentRoute; times: number; colour: string }[] } {
  const { drawn, leftOut } = choosePeers(input);
  const placed = layout(drawn);
  // As tall as the peers drawn need (a few peers on the ring leave much of it empty).
  const ys = [...placed.values()].map((p) => p.y);
  const top = Math.max(0, Math.min(CY - 150, ...ys) - 45);
  const bottom = Math.min(H, Math.max(CY + 150, ...ys) + 50);
  root.setAttribute('viewBox', `0 ${round(top)} ${W} ${round(bottom - top)}`);
  const labelled = drawn.length <= 48;
  const at = (id: string) => placed.get(id);

  const links = svg('g', { class: 'map-links' });
  for (const link of input.links) {
    const a = at(link.from);
    const b = at(link.to);
    if (!a || !b) continue;
    const c = bend(a, b);
    links.append(svg('path', { class: 'map-link', 'data-from': link.from, 'data-to': link.to, 'data-routes': link.routes, d: `M${round(a.x)} ${round(a.y)} Q${round(c.x)} ${round(c.y)} ${round(b.x)} ${round(b.y)}`, 'stroke-width': round(1.5 + Math.log2(link.routes)) }));
  }

  const models = [...new Set(input.routes.map((r) => r.modelId))].sort();
  const colourOf = (modelId: string) => ROUTE_COLOURS[models.indexOf(modelId) % ROUTE_COLOURS.length]!;
  const routeLayer = svg('g', { class: 'map-routes' });
  const labels = svg('g', { class: 'map-latencies' });
  const written = new Set<string>();
  const shown: { route: RecentRoute; times: number; colour: string }[] = [];
  for (const { route, times } of distinctRoutes(input.routes)) {
    if (shown.length >= MAX_ROUTES_DRAWN) break;
    const stops = [route.client, ...route.hops.map((h) => h.peerId), route.client].map(at);
    if (stops.some((s) => !s)) continue; // a peer that left, or one not drawn
    const points = stops as Placed[];
    const colour = colourOf(route.modelId);
    const index = shown.length;
    let d = `M${round(points[0]!.x)} ${round(points[0]!.y)}`;
    const lengths: number[] = [];
    const seconds: number[] = [];
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1]!;
      const b = points[i]!;
      const c = bend(a, b);
      d += ` Q${round(c.x)} ${round(c.y)} ${round(b.x)} ${round(b.y)}`;
      lengths.push(curveLength(a, c, b));
      const hop = route.hops[i - 1];
      seconds.push(hop ? hopSeconds(hop.latencyMs) : RETURN_S);
      // The hop's reported pass time, written once per edge and model at the curve's middle.
      const key = `${route.modelId} ${a.peer.peerId} ${b.peer.peerId}`;
      if (hop && !written.has(key)) {
        written.add(key);
        const mid = { x: 0.25 * a.x + 0.5 * c.x + 0.25 * b.x, y: 0.25 * a.y + 0.5 * c.y + 0.25 * b.y };
        labels.append(svg('text', { class: 'map-latency', x: round(mid.x), y: round(mid.y), fill: colour, 'data-peer-id': hop.peerId, 'data-model': route.modelId, ...(hop.latencyMs === undefined ? {} : { 'data-ms': hop.latencyMs }) }, latencyText(hop.latencyMs)));
      }
    }
    const total = lengths.reduce((s, l) => s + l, 0) || 1;
    const duration = seconds.reduce((s, v) => s + v, 0);
    let along = 0;
    let elapsed = 0;
    const keyPoints = ['0'];
    const keyTimes = ['0'];
    for (let i = 0; i < lengths.length; i++) {
      along += lengths[i]!;
      elapsed += seconds[i]!;
      keyPoints.push(i === lengths.length - 1 ? '1' : (along / total).toFixed(4));
      keyTimes.push(i === lengths.length - 1 ? '1' : (elapsed / duration).toFixed(4));
    }
    const id = `map-route-${index}`;
    routeLayer.append(
      svg('path', { id, class: 'map-route', d, stroke: colour, 'data-client': route.client, 'data-model': route.modelId, 'data-hops': route.hops.map((h) => h.peerId).join(' ') }),
      svg(
        'circle',
        { class: 'map-packet', r: 6, fill: colour, 'data-route': id },
        svg('animateMotion', { dur: `${duration.toFixed(2)}s`, repeatCount: 'indefinite', calcMode: 'linear', keyPoints: keyPoints.join(';'), keyTimes: keyTimes.join(';') }, svg('mpath', { href: `#${id}` })),
      ),
    );
    shown.push({ route, times, colour });
  }

  const nodes = svg('g', { class: 'map-peers' }, ...[...placed.values()].map((p) => peerNode(p, labelled)));
  const children: SVGElement[] = [links, routeLayer, nodes, labels];
  if (leftOut > 0) children.push(svg('text', { class: 'map-more', x: 12, y: round(top + 22) }, `${leftOut} more peer${leftOut === 1 ? '' : 's'} not drawn`));
  root.replaceChildren(...children);
  const parts = [`${drawn.length} peer${drawn.length === 1 ? '' : 's'} drawn`];
  if (leftOut > 0) parts.push(`${leftOut} not drawn (at most ${MAX_PEERS_DRAWN})`);
  parts.push(`${shown.length} route${shown.length === 1 ? '' : 's'} of the last minute`);
  return { note: parts.join(' · '), routes: shown };
}
