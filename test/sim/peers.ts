// A synthetic population for the simulation: peers of three classes (browser tabs, desktops, a few
// servers) with spreads of memory budget, speed, memory bandwidth and link bandwidth, grouped in
// sites (a home or an office: peers of one site share a LAN). Delays between two peers are LAN
// (1-5 ms) inside a site and WAN (20-80 ms) across sites, drawn once per pair from a hash of the
// two ids and the seed, so every run with one seed sees the same network.
import { mulberry32 } from '../helpers/random.ts';

export type PeerClass = 'browser' | 'desktop' | 'server';

export interface SimPeer {
  peerId: string;
  kind: PeerClass;
  /** What the peer offers (capabilities.memoryBudgetMB). */
  memoryBudgetMB: number;
  /** What the peer reports (capabilities.throughput.gflops): its sustained matmul rate. */
  gflops: number;
  /** Memory bandwidth its kernels reach, GB/s (10^9 bytes): a decode step reads every weight once. */
  bandwidthGBs: number;
  /** Link rates, Mbit/s: activations go out on the uplink, weights come in on the downlink. */
  uplinkMbps: number;
  downlinkMbps: number;
  /** Peers of one site are on one LAN. */
  site: number;
}

export interface ClassSpread {
  share: number;
  memoryMB: [number, number];
  gflops: [number, number];
  bandwidthGBs: [number, number];
  uplinkMbps: [number, number];
  downlinkMbps: [number, number];
}

/** The spreads peers are drawn from (uniform in each interval). */
export const CLASSES: Record<PeerClass, ClassSpread> = {
  // A WebGPU tab on a laptop or an integrated GPU: 2-4 GB of the machine offered.
  browser: { share: 0.8, memoryMB: [2048, 4096], gflops: [200, 1500], bandwidthGBs: [20, 60], uplinkMbps: [5, 50], downlinkMbps: [25, 300] },
  // A desktop with a discrete GPU (or a large CPU peer): 8-24 GB.
  desktop: { share: 0.19, memoryMB: [8192, 24576], gflops: [5000, 40000], bandwidthGBs: [150, 700], uplinkMbps: [20, 200], downlinkMbps: [100, 1000] },
  // A datacenter accelerator: 40-80 GB.
  server: { share: 0.01, memoryMB: [40960, 81920], gflops: [100000, 400000], bandwidthGBs: [1500, 3300], uplinkMbps: [1000, 10000], downlinkMbps: [1000, 10000] },
};

/** Mean peers per site: most sites are a home with one or a few machines. */
export const PEERS_PER_SITE = 4;
export const LAN_MS: [number, number] = [1, 5];
export const WAN_MS: [number, number] = [20, 80];

const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Draws peers one at a time, so joins during churn come from the same spreads as the start. */
export class Population {
  private readonly rand: () => number;
  private made = 0;

  constructor(
    seed: number,
    private readonly sites: number,
    private readonly classes: Record<PeerClass, ClassSpread> = CLASSES,
  ) {
    this.rand = mulberry32(seed);
  }

  /** A peer of a class drawn by share (or of `kind`), at a random site (or at `site`). */
  next(kind?: PeerClass, site?: number): SimPeer {
    const r = this.rand;
    const k = kind ?? pickClass(r(), this.classes);
    const c = this.classes[k];
    const u = ([lo, hi]: [number, number]) => lo + (hi - lo) * r();
    // Built in one piece (a flat string, as base64url encoding gives the real ids), not by +=.
    const peerId = String.fromCharCode(...Array.from({ length: 16 }, () => ID_CHARS.charCodeAt(Math.floor(r() * 64))));
    this.made++;
    return {
      peerId,
      kind: k,
      memoryBudgetMB: Math.round(u(c.memoryMB)),
      gflops: Math.round(u(c.gflops)),
      bandwidthGBs: u(c.bandwidthGBs),
      uplinkMbps: u(c.uplinkMbps),
      downlinkMbps: u(c.downlinkMbps),
      site: site ?? Math.floor(r() * this.sites),
    };
  }

  many(count: number, kind?: PeerClass, site?: (i: number) => number): SimPeer[] {
    return Array.from({ length: count }, (_, i) => this.next(kind, site?.(i)));
  }

  /** Peers drawn so far. */
  get count(): number {
    return this.made;
  }
}

function pickClass(x: number, classes: Record<PeerClass, ClassSpread>): PeerClass {
  let acc = 0;
  for (const k of ['browser', 'desktop', 'server'] as const) {
    acc += classes[k].share;
    if (x < acc) return k;
  }
  return 'browser';
}

/** One-way delay in ms between two endpoints: LAN inside a site, WAN across; symmetric and seeded. */
export function delayMs(seed: number, a: { peerId: string; site: number }, b: { peerId: string; site: number }): number {
  if (a.peerId === b.peerId) return 0;
  const [x, y] = a.peerId < b.peerId ? [a.peerId, b.peerId] : [b.peerId, a.peerId];
  const u = hash01(seed, x, y);
  const [lo, hi] = a.site === b.site ? LAN_MS : WAN_MS;
  return lo + (hi - lo) * u;
}

/** FNV-1a over the seed and both ids, finished with a mulberry32 step: a uniform draw in [0, 1). */
function hash01(seed: number, x: string, y: string): number {
  let h = 0x811c9dc5 ^ seed;
  for (const s of [x, '|', y]) {
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  return mulberry32(h >>> 0)();
}
