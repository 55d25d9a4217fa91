// The minimal web page: join a network from this tab and list the peers seen.
// window.aigrid exposes the live mesh for scripting and for the end-to-end tests, and lets the tab
// serve a layer range of a model (contribute) on that mesh.
import { GridPeer, type ServingStatus } from '../grid/index.ts';
import { openCheckpoint } from '../model/checkpoint/index.ts';
import type { BackendChoice } from '../model/backend/select.ts';
import { Mesh, detectCapabilities, type MeshOptions } from '../mesh/index.ts';
import { AigridError, type ModelSpec, type PeerInfo } from '../protocol/index.ts';

interface JoinOptions {
  network: string;
  memoryBudgetMB?: number;
  signal?: string;
  maxConnections?: number;
  autoConnect?: boolean;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const defaultSignal = params.get('signal') ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/signal`;

interface ContributeOptions {
  model: ModelSpec;
  /** Layers [start, end) to serve. */
  start: number;
  end: number;
  /** 'auto' (default): WebGPU when the page has an adapter, else the CPU. */
  backend?: BackendChoice;
  /** Keep downloaded ranges in the Cache API (default true). */
  cache?: boolean;
}

let mesh: Mesh | null = null;
let gridPeer: GridPeer | null = null;
let cacheRanges = true;
const rtts = new Map<string, number>();
let rttTimer: ReturnType<typeof setInterval> | undefined;

function render(): void {
  const body = $('peers').querySelector('tbody')!;
  body.replaceChildren();
  const connected = new Set(mesh?.connectedPeers() ?? []);
  for (const peer of mesh?.peers() ?? []) body.append(row(peer, connected.has(peer.peerId)));
}

function row(peer: PeerInfo, linked: boolean): HTMLTableRowElement {
  const tr = document.createElement('tr');
  tr.dataset.peerId = peer.peerId;
  const gpu = peer.capabilities.gpu;
  const cells = [
    peer.peerId,
    peer.capabilities.kind,
    gpu ? `${gpu.vendor} ${gpu.architecture}`.trim() || 'WebGPU' : 'none',
    String(peer.capabilities.memoryBudgetMB),
    peer.capabilities.throughput.gflops.toFixed(2),
    linked ? 'connected' : '–',
    rtts.has(peer.peerId) ? rtts.get(peer.peerId)!.toFixed(2) : '–',
  ];
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  if (linked) tr.cells[5]!.className = 'connected';
  return tr;
}

async function join(options: JoinOptions): Promise<Mesh> {
  leave();
  $('error').textContent = '';
  const capabilities = await detectCapabilities({
    kind: 'browser',
    memoryBudgetMB: options.memoryBudgetMB ?? 1024,
    gpu: navigator.gpu,
    agent: navigator.userAgent,
  });
  $('gpu').textContent = capabilities.gpu
    ? `${capabilities.gpu.vendor} ${capabilities.gpu.architecture} ${capabilities.gpu.description}`.trim()
    : 'no WebGPU adapter in this browser';
  const meshOptions: MeshOptions = {
    signal: options.signal ?? defaultSignal,
    network: options.network,
    capabilities,
    maxConnections: options.maxConnections,
    autoConnect: options.autoConnect,
  };
  const current = new Mesh(meshOptions);
  mesh = current;
  $('peer-id').textContent = current.peerId;
  current.on('state', (s) => ($('state').textContent = s));
  current.on('peers', render);
  current.on('connection', render);
  current.on('disconnect', (id) => {
    rtts.delete(id);
    render();
  });
  current.on('warning', (err) => ($('error').textContent = `${err.code}: ${err.message}`));
  await current.start();
  $('state').textContent = 'open';
  ($('join') as HTMLButtonElement).disabled = true;
  ($('leave') as HTMLButtonElement).disabled = false;
  rttTimer = setInterval(() => void measureRtts(current), 2000);
  render();
  return current;
}

async function measureRtts(current: Mesh): Promise<void> {
  for (const id of current.connectedPeers()) {
    const rtt = await current.link(id)?.ping().catch(() => undefined);
    if (rtt !== undefined) rtts.set(id, rtt);
  }
  render();
}

/**
 * Serves layers [start, end) of a model from this tab on the joined mesh: the weights are read over
 * HTTP Range from the model's source. Resolves with the serving status once the shard is ready.
 */
async function contribute(options: ContributeOptions): Promise<ServingStatus> {
  const current = mesh;
  if (!current) throw new AigridError('ERR_INVALID_ARGUMENT', 'join a network before contributing');
  if (gridPeer?.mesh !== current) {
    gridPeer?.close();
    gridPeer = new GridPeer({
      mesh: current,
      backend: options.backend ?? 'auto',
      open: (model, signal) =>
        openCheckpoint(model.source, { baseUrl: model.baseUrl, revision: model.revision, signal, cache: cacheRanges ? undefined : false }),
    });
  }
  const { model, start, end } = options;
  cacheRanges = options.cache !== false;
  await gridPeer.assign(model, start, end);
  return gridPeer.status().find((s) => s.modelId === model.modelId)!;
}

function leave(): void {
  clearInterval(rttTimer);
  gridPeer?.close();
  gridPeer = null;
  mesh?.close();
  mesh = null;
  rtts.clear();
  $('state').textContent = 'not joined';
  $('peer-id').textContent = '–';
  ($('join') as HTMLButtonElement).disabled = false;
  ($('leave') as HTMLButtonElement).disabled = true;
  render();
}

$('join-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const network = ($('network') as HTMLInputElement).value;
  const memoryBudgetMB = Number(($('memory') as HTMLInputElement).value);
  join({ network, memoryBudgetMB }).catch((err: Error) => ($('error').textContent = err.message));
});
$('leave').addEventListener('click', leave);

declare global {
  interface Window {
    aigrid: {
      join: typeof join;
      leave: typeof leave;
      contribute: typeof contribute;
      readonly mesh: Mesh | null;
      readonly grid: GridPeer | null;
    };
  }
}
window.aigrid = {
  join,
  leave,
  contribute,
  get mesh() {
    return mesh;
  },
  get grid() {
    return gridPeer;
  },
};

const autoNetwork = params.get('network');
if (autoNetwork) {
  ($('network') as HTMLInputElement).value = autoNetwork;
  join({ network: autoNetwork }).catch((err: Error) => ($('error').textContent = err.message));
}
