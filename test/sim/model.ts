// Modelled throughput of a route: how long a token takes through the hops findRoute picked, from
// the model's shape and the peers' spreads. Nothing here runs a kernel; every figure follows from
// the assumptions below, which sim.ts prints with its results.
//
//  - A hop's work on L layers for B rows is a roofline: per layer, the longer of reading the layer
//    (its weights once, plus each row's KV cache) at the peer's memory bandwidth and doing the
//    row's FLOPs (2 x parameters + attention over the context) at the peer's reported GFLOP/s.
//    Decode steps are bandwidth-bound, so batching B sessions costs about one step; prefill
//    chunks of C tokens turn compute-bound as C grows.
//  - Each hop adds a fixed frame overhead (HOP_OVERHEAD_MS: decode, dispatch, encode of a frame).
//  - Activations cross each link as f16 (hidden x 2 bytes per row, as encodeHidden sends them),
//    at the sender's uplink rate, after the link's one-way delay.
//  - Chain forwarding as the grid does it: client -> hop 1 -> ... -> hop k -> client; the client
//    holds the head (it reads the LM head once per token at CLIENT.bandwidthGBs).
//  - The KV cache is f32 (the peers' default); weights are at the shape's bits per weight.
import type { Hop } from '../../protocol/index.ts';
import { delayMs, type SimPeer } from './peers.ts';

export interface ModelShape {
  name: string;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  vocab: number;
  /** Q4_K: 144 bytes per 256 weights = 4.5 bits. */
  bitsPerWeight: number;
}

const Q4_K_BITS = 4.5;

export const LLAMA3_70B: ModelShape = { name: 'llama-3-70b-q4', layers: 80, hidden: 8192, heads: 64, kvHeads: 8, headDim: 128, intermediate: 28672, vocab: 128256, bitsPerWeight: Q4_K_BITS };
export const LLAMA3_8B: ModelShape = { name: 'llama-3-8b-q4', layers: 32, hidden: 4096, heads: 32, kvHeads: 8, headDim: 128, intermediate: 14336, vocab: 128256, bitsPerWeight: Q4_K_BITS };
export const LLAMA32_1B: ModelShape = { name: 'llama-3.2-1b-q4', layers: 16, hidden: 2048, heads: 32, kvHeads: 8, headDim: 64, intermediate: 8192, vocab: 128256, bitsPerWeight: Q4_K_BITS };
export const LLAMA31_405B: ModelShape = { name: 'llama-3.1-405b-q4', layers: 126, hidden: 16384, heads: 128, kvHeads: 8, headDim: 128, intermediate: 53248, vocab: 128256, bitsPerWeight: Q4_K_BITS };

/** Tokens of KV cache each layer's byte count reserves (client/grid/model-spec.ts). */
export const KV_TOKENS_PER_LAYER = 2048;
const KV_BYTES_PER_VALUE = 4;
const ACTIVATION_BYTES_PER_VALUE = 2;
export const HOP_OVERHEAD_MS = 1;

/** The client of a route: a desktop-class machine at its own site, holding the head. */
export interface SimClient {
  peerId: string;
  site: number;
  bandwidthGBs: number;
  uplinkMbps: number;
}

export const CLIENT_SPREAD = { bandwidthGBs: 50, uplinkMbps: 50 };

export function paramsPerLayer(s: ModelShape): number {
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  return 2 * s.hidden * q + 2 * s.hidden * kv + 3 * s.hidden * s.intermediate;
}

export function weightBytesPerLayer(s: ModelShape): number {
  return (paramsPerLayer(s) * s.bitsPerWeight) / 8;
}

/** What placement counts per layer: weights plus the KV share, as modelSpecFromCheckpoint does. */
export function layerBytes(s: ModelShape): number {
  return Math.ceil(weightBytesPerLayer(s) + KV_TOKENS_PER_LAYER * 2 * s.kvHeads * s.headDim * KV_BYTES_PER_VALUE);
}

/** The LM head the client reads per token (untied, at the shape's bits). */
export function headBytes(s: ModelShape): number {
  return (s.vocab * s.hidden * s.bitsPerWeight) / 8;
}

function kvBytes(s: ModelShape, positions: number): number {
  return 2 * s.kvHeads * s.headDim * positions * KV_BYTES_PER_VALUE;
}

/** FLOPs of one row through one layer attending over `context` positions. */
function flopsPerRow(s: ModelShape, context: number): number {
  return 2 * paramsPerLayer(s) + 4 * context * s.heads * s.headDim;
}

/**
 * ms for one peer to run `layers` layers on `rows` rows: `sessions` separate KV caches of
 * `context` positions each are read (a decode batch has one per session; a prefill chunk one).
 */
export function computeMs(s: ModelShape, peer: Pick<SimPeer, 'bandwidthGBs' | 'gflops'>, layers: number, rows: number, context: number, sessions = rows): number {
  const bytes = weightBytesPerLayer(s) + sessions * kvBytes(s, context);
  const memory = bytes / (peer.bandwidthGBs * 1e9);
  const math = (rows * flopsPerRow(s, context)) / (Math.max(peer.gflops, 1) * 1e9);
  return layers * Math.max(memory, math) * 1000;
}

/** ms to put `rows` activation rows on a link of `uplinkMbps`. */
export function transferMs(s: ModelShape, uplinkMbps: number, rows: number): number {
  return (rows * s.hidden * ACTIVATION_BYTES_PER_VALUE * 8) / (uplinkMbps * 1e6) * 1000;
}

export function clientHeadMs(s: ModelShape, client: SimClient): number {
  return (headBytes(s) / (client.bandwidthGBs * 1e9)) * 1000;
}

export interface TokenTime {
  totalMs: number;
  computeMs: number;
  /** Delays and transfers on every link of the loop, the client's two included. */
  linkMs: number;
  headMs: number;
  hops: number;
}

/**
 * One decode step of one session through `route` (batch of `batchOf(hop)` rows at each hop).
 * `seed` fixes the pairwise delays.
 */
export function tokenTime(
  s: ModelShape,
  route: readonly Hop[],
  peers: ReadonlyMap<string, SimPeer>,
  client: SimClient,
  context: number,
  seed: number,
  batchOf: (hop: Hop) => number = () => 1,
): TokenTime {
  let compute = 0;
  let link = 0;
  let from: SimClient | SimPeer = client;
  for (const hop of route) {
    const p = peers.get(hop.peerId)!;
    link += delayMs(seed, from, p) + transferMs(s, from.uplinkMbps, 1);
    const b = batchOf(hop);
    compute += computeMs(s, p, hop.end - hop.start, b, context) + HOP_OVERHEAD_MS;
    from = p;
  }
  link += delayMs(seed, from, client) + transferMs(s, from.uplinkMbps, 1);
  const head = clientHeadMs(s, client);
  return { totalMs: compute + link + head, computeMs: compute, linkMs: link, headMs: head, hops: route.length };
}

/**
 * Time to first token of a `prompt`-token prompt sent in chunks of `chunk` tokens back to back (as
 * RemoteSession.run sends them): each hop works on one chunk at a time in arrival order, and each
 * sender's uplink carries one chunk at a time, so chunks overlap across hops. The first token is
 * out when the last chunk's rows are back at the client and it ran the head on the last row.
 */
export function timeToFirstTokenMs(
  s: ModelShape,
  route: readonly Hop[],
  peers: ReadonlyMap<string, SimPeer>,
  client: SimClient,
  prompt: number,
  chunk: number,
  seed: number,
): number {
  const chunks: { rows: number; at: number }[] = [];
  for (let t = 0; t < prompt; t += chunk) chunks.push({ rows: Math.min(chunk, prompt - t), at: t });
  // arrive[j]: when chunk j reaches the current hop.
  let sentAt = 0;
  let arrive = chunks.map((c) => {
    sentAt += transferMs(s, client.uplinkMbps, c.rows);
    return sentAt + delayMs(seed, client, peers.get(route[0]!.peerId)!);
  });
  for (let i = 0; i < route.length; i++) {
    const hop = route[i]!;
    const p = peers.get(hop.peerId)!;
    const next: SimClient | SimPeer = i + 1 < route.length ? peers.get(route[i + 1]!.peerId)! : client;
    const delay = delayMs(seed, p, next);
    let busy = 0;
    let uplink = 0;
    arrive = chunks.map((c, j) => {
      busy = Math.max(arrive[j]!, busy) + computeMs(s, p, hop.end - hop.start, c.rows, c.at + c.rows / 2, 1) + HOP_OVERHEAD_MS;
      uplink = Math.max(busy, uplink) + transferMs(s, p.uplinkMbps, c.rows);
      return uplink + delay;
    });
  }
  return arrive[arrive.length - 1]! + clientHeadMs(s, client);
}

/**
 * Tokens/s of many sessions decoding at once, each on its own route. Sessions whose hops hold the
 * same peer and layer range form one batch there (the peer's decode batcher runs them as one
 * pass); sessions move in lockstep, so each batch costs one step per token. A peer with batches of
 * several ranges runs them one after another. Each session's rate is 1 / its step time, scaled down
 * by the busiest peer on its route when that peer's work per second passes 1 s (one pass of that
 * correction: an estimate, upper-bounded by perfect batching).
 */
export function aggregateTokS(
  s: ModelShape,
  routes: readonly (readonly Hop[])[],
  clients: readonly SimClient[],
  peers: ReadonlyMap<string, SimPeer>,
  context: number,
  seed: number,
): { tokS: number; perSessionTokS: number[]; busiestPeerLoad: number } {
  const lane = (h: Hop) => `${h.peerId}:${h.start}:${h.end}`;
  const batch = new Map<string, number>();
  for (const r of routes) for (const h of r) batch.set(lane(h), (batch.get(lane(h)) ?? 0) + 1);
  const times = routes.map((r, i) => tokenTime(s, r, peers, clients[i]!, context, seed, (h) => batch.get(lane(h))!).totalMs);
  const rates = times.map((t) => 1000 / t);
  // Work per second each peer does: per lane, one batched step per token of its slowest member.
  const laneRate = new Map<string, number>();
  routes.forEach((r, i) => r.forEach((h) => laneRate.set(lane(h), Math.max(laneRate.get(lane(h)) ?? 0, rates[i]!))));
  const load = new Map<string, number>();
  for (const r of routes) {
    for (const h of r) {
      const key = lane(h);
      if (!laneRate.has(key)) continue;
      const step = (computeMs(s, peers.get(h.peerId)!, h.end - h.start, batch.get(key)!, context) + HOP_OVERHEAD_MS) / 1000;
      load.set(h.peerId, (load.get(h.peerId) ?? 0) + step * laneRate.get(key)!);
      laneRate.delete(key);
    }
  }
  const perSession = routes.map((r, i) => rates[i]! / Math.max(1, ...r.map((h) => load.get(h.peerId) ?? 0)));
  return { tokS: perSession.reduce((a, b) => a + b, 0), perSessionTokS: perSession, busiestPeerLoad: Math.max(0, ...load.values()) };
}
