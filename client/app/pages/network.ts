// Network: the peers of the joined network (live from the directory), each model's per-layer
// coverage (pushed by the coordinator), and plots over time sampled every two seconds: tokens per
// second, the signaling round trip, peers and ready layer copies.
import type { ModelCoverage, PeerServing } from '../../../protocol/index.ts';
import { modelInfo, type ModelInfo } from '../../sdk/index.ts';
import { activity } from '../activity.ts';
import { TimeChart } from '../charts.ts';
import { onConnection, type Connection } from '../connection.ts';
import { $ } from '../dom.ts';
import type { Page } from '../router.ts';
import { renderModels } from './coverage-view.ts';
import { refreshNetworkMap, startNetworkMap } from './network-map.ts';
import { renderPeers, type PeerTrust } from './peers-view.ts';

const SAMPLE_MS = 2000;
let current: Connection | null = null;
let models: ModelInfo[] = [];
/** What each peer serves, from the server's HTTP view (peers report every ~10 s). */
let work: PeerServing[] = [];
let trust: Record<string, PeerTrust> = {};
const rtts = new Map<string, number>();
let visible = false;
let charts: TimeChart[] = [];
let throughput: TimeChart;
let latency: TimeChart;
let population: TimeChart;

/** Kept current even while hidden: scripts and tests read the peer table on any page. */
function render(): void {
  renderPeers(current?.mesh ?? null, rtts, current?.grid.contributing?.peerId, work, trust);
  renderModels(current ? models : null);
  $('net-summary').textContent = current
    ? `Network ${current.network}: ${current.mesh.peers().length + 1} peers (this tab included), ${models.length} model${models.length === 1 ? '' : 's'} served.`
    : 'Not joined: join a network above to see it.';
}

function setModels(coverage: ModelCoverage[]): void {
  models = coverage.map(modelInfo);
  render();
}

interface Last {
  at: number;
  served: number;
  /** The network's tokens served (summed over peer reports) and when it last changed. */
  network: number;
  networkAt: number;
}

/** The server's view of who serves what and what checks found of each peer; empty when it cannot be read. */
async function fetchWork(c: Connection): Promise<{ serving: PeerServing[]; reputation: Record<string, PeerTrust> }> {
  const res = await fetch(`${c.httpBase}/api/networks/${encodeURIComponent(c.network)}`).catch(() => null);
  const body = res?.ok ? ((await res.json().catch(() => null)) as { serving?: PeerServing[]; reputation?: Record<string, PeerTrust> } | null) : null;
  const reputation = body?.reputation && typeof body.reputation === 'object' ? body.reputation : {};
  return { serving: Array.isArray(body?.serving) ? body.serving : [], reputation };
}

/** Tokens per second the whole network served between the last two changes of the peers' reports. */
function networkRate(last: Last, at: number): number | null {
  const total = work.reduce((sum, w) => sum + w.tokensServed, 0);
  if (!last.networkAt || total < last.network) {
    Object.assign(last, { network: total, networkAt: at });
    return null;
  }
  if (total === last.network) return at - last.networkAt > 20_000 ? 0 : null;
  const rate = ((total - last.network) * 1000) / (at - last.networkAt);
  Object.assign(last, { network: total, networkAt: at });
  return rate;
}

/** One sample for the plots, and fresh round trips to linked peers for the table. */
async function sample(c: Connection, last: Last): Promise<void> {
  const { mesh, grid } = c;
  const at = Date.now();
  const served = grid.contributing?.tokensServed ?? 0;
  const rate = last.at && served >= last.served ? ((served - last.served) * 1000) / (at - last.at) : 0;
  Object.assign(last, { at, served });
  const fetched = await fetchWork(c);
  if (current !== c) return;
  work = fetched.serving;
  trust = fetched.reputation;
  const network = networkRate(last, at);
  const rtt = await within(mesh.signaling.ping(), 5000);
  for (const id of mesh.connectedPeers()) {
    const ms = await within(mesh.link(id)?.ping() ?? Promise.resolve(undefined), 2000);
    if (ms !== undefined) rtts.set(id, ms);
  }
  if (current !== c) return;
  const copies = models.reduce((sum, m) => sum + m.coverage.ready.reduce((a, b) => a + b, 0), 0);
  throughput.push(at, [rate, activity.lastReplyTokensPerSecond || null, network]);
  latency.push(at, [rtt ?? null]);
  population.push(at, [mesh.peers().length + 1, copies]);
  render();
}

function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([promise.catch(() => undefined), new Promise<undefined>((r) => setTimeout(() => r(undefined), ms))]);
}

function follow(c: Connection): () => void {
  const { mesh, grid } = c;
  const onPeers = () => render();
  const onDisconnect = (id: string) => {
    rtts.delete(id);
    render();
  };
  mesh.on('peers', onPeers);
  mesh.on('connection', onPeers);
  mesh.on('disconnect', onDisconnect);
  mesh.signaling.on('models', setModels);
  const last: Last = { at: 0, served: 0, network: 0, networkAt: 0 };
  let busy = false;
  const tick = () => {
    if (busy) return;
    busy = true;
    void sample(c, last).finally(() => (busy = false));
  };
  const timer = setInterval(tick, SAMPLE_MS);
  tick();
  void grid.models.list().catch(() => undefined); // answered by a 'models' event
  return () => {
    clearInterval(timer);
    mesh.off('peers', onPeers);
    mesh.off('connection', onPeers);
    mesh.off('disconnect', onDisconnect);
    mesh.signaling.off('models', setModels);
  };
}

export const networkPage: Page = {
  show() {
    visible = true;
    if (current) void current.grid.models.list().catch(() => undefined);
    render();
    refreshNetworkMap();
    for (const chart of charts) chart.draw();
  },
  hide() {
    visible = false;
  },
};

export function startNetwork(): void {
  throughput = new TimeChart($('chart-throughput'), 'Tokens per second', [
    { label: 'served by this tab', stroke: '#1a7f37' },
    { label: "this tab's last reply", stroke: '#0969da' },
    { label: 'whole network (peer reports)', stroke: '#cf222e' },
  ], 'tok/s');
  latency = new TimeChart($('chart-latency'), 'Signaling round trip', [{ label: 'round trip', stroke: '#bf3989' }], 'ms');
  population = new TimeChart($('chart-peers'), 'Peers and ready layer copies', [
    { label: 'peers', stroke: '#8250df' },
    { label: 'ready layer copies', stroke: '#9a6700' },
  ], 'count');
  charts = [throughput, latency, population];
  startNetworkMap();
  let stop = () => {};
  onConnection((c) => {
    stop();
    stop = () => {};
    current = c;
    models = [];
    work = [];
    rtts.clear();
    if (c) stop = follow(c);
    render();
  });
  addEventListener('resize', () => {
    if (visible) for (const chart of charts) chart.draw();
  });
}
