// The Network page's peer table: every other peer from the directory (one row each, data-peer-id),
// this tab's serving peer marked among them, and this tab's client peer in the footer.
import type { Mesh } from '../../mesh/index.ts';
import type { PeerInfo, PeerServing } from '../../../protocol/index.ts';
import { $, row } from '../dom.ts';

/** What clients' spot-checks found of a peer's work, as the coordinator keeps it. */
export interface PeerTrust {
  verified: number;
  wrong: number;
  excluded: boolean;
  newcomer: boolean;
}

/**
 * `serving`: the peer id of this tab's contribution, a peer of its own listed with the others;
 * `work`: what each peer serves, as the coordinator last heard it; `trust`: its reputation.
 */
export function renderPeers(mesh: Mesh | null, rtts: ReadonlyMap<string, number>, serving?: string, work: readonly PeerServing[] = [], trust: Readonly<Record<string, PeerTrust>> = {}): void {
  const table = $('peers');
  const linked = new Set(mesh?.connectedPeers() ?? []);
  const others = (mesh?.peers() ?? []).map((p) => {
    const tr = peerRow(p, linked.has(p.peerId), rtts.get(p.peerId), p.peerId === serving ? "this tab's serving peer" : undefined);
    const held = work.filter((w) => w.peerId === p.peerId);
    tr.insertCell().textContent = held.map((w) => `${w.modelId} [${w.start}, ${w.end}) ${w.state} · ${w.tokensServed} tok`).join('; ') || '–';
    const t = trust[p.peerId];
    const cell = tr.insertCell();
    cell.textContent = t ? trustText(t) : '–';
    if (t?.excluded) cell.className = 'excluded';
    return tr;
  });
  table.querySelector('tbody')!.replaceChildren(...others);
  const self: PeerInfo | null = mesh ? { peerId: mesh.peerId, capabilities: mesh.signaling.capabilities, joinedAt: 0 } : null;
  const footer = self ? peerRow(self, false, undefined, 'this tab') : null;
  footer?.insertCell().append('–');
  footer?.insertCell().append('–');
  table.querySelector('tfoot')!.replaceChildren(...(footer ? [footer] : []));
}

function peerRow(peer: PeerInfo, linked: boolean, rtt: number | undefined, note?: string): HTMLTableRowElement {
  const { kind, gpu, memoryBudgetMB, throughput } = peer.capabilities;
  const self = note === 'this tab';
  const tr = row([
    note ? `${peer.peerId} (${note})` : peer.peerId,
    kind,
    gpu ? `${gpu.vendor} ${gpu.architecture}`.trim() || 'WebGPU' : 'none',
    String(Math.round(memoryBudgetMB * 100) / 100),
    `${throughput.gflops.toFixed(2)} (${throughput.backend})`,
    self ? '–' : linked ? 'connected' : '–',
    rtt !== undefined ? rtt.toFixed(2) : '–',
  ]);
  tr.dataset.peerId = peer.peerId;
  if (linked) tr.cells[5]!.className = 'connected';
  return tr;
}

function trustText(t: PeerTrust): string {
  const counts = `${t.verified} verified${t.wrong ? `, ${t.wrong} wrong` : ''}`;
  return t.excluded ? `excluded (${counts})` : t.newcomer ? `${counts} · new` : counts;
}
