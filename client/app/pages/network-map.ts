// The Network page's live map: every few seconds while the page is shown, the server's view of
// the network (/api/networks/:name: peers, what they serve, their reputation) and of the routes it
// handed out lately (/api/networks/:name/routes), checked, then drawn (network-map-draw.ts) with a
// legend and the list of the routes drawn.
import { PeerInfoSchema, type PeerInfo } from '../../../protocol/index.ts';
import { RoutesViewSchema, type RecentRoute, type RouteLink } from '../../../protocol/routes-view.ts';
import { onConnection, type Connection } from '../connection.ts';
import { $, el } from '../dom.ts';
import { drawMap, latencyText, SLOWDOWN, type MapInput, type MapPeer } from './network-map-draw.ts';
import type { PeerTrust } from './peers-view.ts';

const REFRESH_MS = 3000;
/** Peers read from the view at most (the server's cap per network). */
const MAX_PEERS_READ = 10_000;

let current: Connection | null = null;
let root: SVGSVGElement;
/** What was drawn last, so an unchanged network keeps its animations running. */
let drawnKey = '';
let busy = false;

export function startNetworkMap(): void {
  const box = $('network-map');
  root = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  root.id = 'map-svg';
  root.setAttribute('role', 'img');
  root.setAttribute('aria-label', 'Map of the peers and the routes hidden states take');
  box.replaceChildren(el('h3', {}, 'Map'), root, el('p', { id: 'map-note', class: 'facts' }, 'Not joined.'), legend(), el('ul', { id: 'map-routes' }));
  onConnection((c) => {
    current = c;
    drawnKey = '';
    if (!c) {
      root.replaceChildren();
      $('map-routes').replaceChildren();
      $('map-note').textContent = 'Not joined: join a network above to see its map.';
    }
    refreshNetworkMap();
  });
  setInterval(refreshNetworkMap, REFRESH_MS);
}

/** Fetches and redraws now, if the Network page is on screen (called when it is shown). */
export function refreshNetworkMap(): void {
  const c = current;
  if (!c || busy || document.hidden || $('page-network').hidden) return;
  busy = true;
  void load(c)
    .then((input) => {
      if (current !== c) return;
      if (!input) return void ($('map-note').textContent = 'The server did not answer with the network; retrying.');
      const key = JSON.stringify(input);
      if (key === drawnKey) return;
      drawnKey = key;
      const { note, routes } = drawMap(root, input);
      $('map-note').textContent = note;
      $('map-routes').replaceChildren(...routes.map(({ route, times, colour }) => routeItem(route, times, colour)));
    })
    .finally(() => (busy = false));
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url).catch(() => null);
  return res?.ok ? res.json().catch(() => null) : null;
}

/** The server's answers, checked: anything malformed is left out rather than drawn. */
async function load(c: Connection): Promise<MapInput | null> {
  const base = `${c.httpBase}/api/networks/${encodeURIComponent(c.network)}`;
  const [network, view] = await Promise.all([getJson(base), getJson(`${base}/routes`)]);
  const body = network as { peers?: unknown; serving?: unknown; reputation?: unknown } | null;
  if (!body || !Array.isArray(body.peers)) return null;
  const peers = body.peers.slice(0, MAX_PEERS_READ).flatMap((p) => {
    const parsed = PeerInfoSchema.safeParse(p);
    return parsed.success ? [parsed.data] : [];
  });
  const serving = servingByPeer(body.serving);
  const trust = body.reputation && typeof body.reputation === 'object' ? (body.reputation as Record<string, Partial<PeerTrust>>) : {};
  const parsed = RoutesViewSchema.safeParse(view);
  const routes: RecentRoute[] = parsed.success ? parsed.data.routes : [];
  const links: RouteLink[] = parsed.success ? parsed.data.links : [];
  const self = c.mesh.peerId;
  return { peers: peers.map((p) => mapPeer(p, serving.get(p.peerId), trust[p.peerId], p.peerId === self)), routes, links };
}

function servingByPeer(list: unknown): Map<string, { text: string; first: number }> {
  const out = new Map<string, { text: string; first: number }>();
  if (!Array.isArray(list)) return out;
  for (const s of list.slice(0, MAX_PEERS_READ * 4) as { peerId?: unknown; modelId?: unknown; start?: unknown; end?: unknown; state?: unknown }[]) {
    if (typeof s?.peerId !== 'string' || typeof s.modelId !== 'string' || typeof s.start !== 'number' || typeof s.end !== 'number') continue;
    const text = `${s.modelId} [${s.start}, ${s.end}) ${String(s.state).slice(0, 16)}`;
    const known = out.get(s.peerId);
    out.set(s.peerId, known ? { text: `${known.text}; ${text}`, first: Math.min(known.first, s.start) } : { text, first: s.start });
  }
  return out;
}

function mapPeer(p: PeerInfo, serving: { text: string; first: number } | undefined, t: Partial<PeerTrust> | undefined, self: boolean): MapPeer {
  const { kind, gpu, throughput } = p.capabilities;
  const known = t && typeof t.verified === 'number' && typeof t.wrong === 'number';
  const standing = !known ? 'unknown' : t.excluded ? 'excluded' : t.newcomer ? 'newcomer' : 'established';
  return {
    peerId: p.peerId,
    kind,
    backend: throughput.backend,
    gpu: gpu ? `${gpu.vendor} ${gpu.architecture}`.trim() || 'WebGPU' : null,
    standing,
    verified: known ? t.verified! : 0,
    wrong: known ? t.wrong! : 0,
    serving: serving?.text ?? '',
    ...(serving ? { firstLayer: serving.first } : {}),
    self,
  };
}

function routeItem(route: RecentRoute, times: number, colour: string): HTMLLIElement {
  const hops = route.hops.map((h) => `${h.peerId.slice(0, 8)} [${h.start}, ${h.end}) ${latencyText(h.latencyMs)}`);
  const more = route.hopsLeftOut ? ` → … ${route.hopsLeftOut} more hops` : '';
  const item = el('li', { 'data-client': route.client }, el('span', { class: 'swatch', style: `background:${colour}` }), ` ${route.modelId}: ${route.client.slice(0, 8)} → ${hops.join(' → ')}${more} → back${times > 1 ? ` (×${times})` : ''}`);
  return item;
}

function legend(): HTMLElement {
  const dot = (cls: string, text: string) => el('span', { class: 'legend-item' }, el('span', { class: `legend-dot ${cls}` }), text);
  return el(
    'div',
    { class: 'facts' },
    el('p', { class: 'map-legend' }, dot('kind-browser', 'browser'), dot('kind-node', 'Node'), dot('kind-extension', 'extension'), '· G: runs on WebGPU, C: on the CPU · reputation:', dot('ring-established', 'established'), dot('ring-newcomer', 'newcomer'), dot('ring-excluded', 'excluded')),
    el('p', {}, `Outer ring: serving peers in the order of their layers. Dots run ${SLOWDOWN}× slower than the hidden states; the number on an edge is the pass time its hop last reported.`),
  );
}
