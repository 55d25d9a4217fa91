// The minimal web page: join a network from this tab and list the peers seen.
// window.aigrid exposes the live mesh for scripting and for the end-to-end tests.
import { Mesh, detectCapabilities, type MeshOptions } from '../mesh/index.ts';
import type { PeerInfo } from '../protocol/index.ts';

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

let mesh: Mesh | null = null;
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

function leave(): void {
  clearInterval(rttTimer);
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
    aigrid: { join: typeof join; leave: typeof leave; readonly mesh: Mesh | null };
  }
}
window.aigrid = { join, leave, get mesh() { return mesh; } };

const autoNetwork = params.get('network');
if (autoNetwork) {
  ($('network') as HTMLInputElement).value = autoNetwork;
  join({ network: autoNetwork }).catch((err: Error) => ($('error').textContent = err.message));
}
