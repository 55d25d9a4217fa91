// Placement of a model's layers on the peers of a network: which contiguous range each peer holds.
// Pure and deterministic (peers are ordered by peerId first, so their input order does not matter),
// so the signaling server and clients compute the same answer from the same inputs.
import { AigridError, type ModelSpec } from '../protocol/index.ts';
import {
  addCoverage,
  bestWindow,
  bySpeed,
  coverageOf,
  extendToTarget,
  firstK,
  rangeLength,
  sameRange,
  spanSizes,
  tile,
  type LayerRange,
  type Slot,
} from './layout.ts';

export { coverageOf, sameRange, type LayerRange };

/** Memory budgets are in MB of 2^20 bytes. */
export const BYTES_PER_MB = 1024 * 1024;
/** A chain needs at most this many hops when peers have room: spans are at least numLayers / 8. */
export const DEFAULT_MAX_STAGES = 8;
/**
 * Copies beyond `replication` that placement takes peers without a range for: one spare copy, so
 * a holder that leaves does not drop its layers below the replication asked while its replacement
 * loads.
 */
export const DEFAULT_SPARE_COPIES = 1;

export type PlacementModel = Pick<ModelSpec, 'numLayers' | 'layerBytes' | 'replication'> & Partial<Pick<ModelSpec, 'modelId' | 'light' | 'headBytes'>>;

export interface PlacementPeer {
  peerId: string;
  memoryBudgetMB: number;
  gflops: number;
  /** The range the peer holds now; kept when it still fits, so the peer does not reload. */
  current?: LayerRange;
}

export interface PlacementOptions {
  /** Lower bound on span length is ceil(numLayers / maxStages), within each peer's capacity. */
  maxStages?: number;
  /**
   * Peers without a range are taken (fastest first) only until the minimum spans of all taken
   * peers add up to replication + spareCopies copies of the model; the others hold nothing of it
   * (default DEFAULT_SPARE_COPIES; Infinity: every peer with room takes a range).
   */
  spareCopies?: number;
}

export interface Placement {
  model: PlacementModel;
  /** peerId -> [start, end), ordered by peerId; peers without a range are absent. */
  assignments: Map<string, LayerRange>;
  /** Per layer: how many assigned peers hold it. */
  coverage: number[];
  /** The least coverage of any layer, i.e. the replication achieved (0 when a layer is uncovered). */
  replication: number;
  /** ERR_INSUFFICIENT_MEMORY when the peers cannot hold one full copy. */
  error?: AigridError;
  /** Why replication is below the model's target, when it is. */
  warning?: string;
}

/** Whole layers a budget holds (a peer below one layer holds none). */
export function layerCapacity(model: PlacementModel, memoryBudgetMB: number): number {
  if (!Number.isFinite(memoryBudgetMB) || memoryBudgetMB <= 0) return 0;
  return Math.min(model.numLayers, Math.floor((memoryBudgetMB * BYTES_PER_MB) / model.layerBytes + 1e-9));
}

/**
 * Places a model on peers, keeping each peer's `current` range where it still works. For a light
 * model the peers whose range holds the first or the last layer also load the head parts
 * (`headBytes`), so those are counted against their budgets like layers.
 */
export function place(model: PlacementModel, peers: readonly PlacementPeer[], options: PlacementOptions = {}): Placement {
  return placeWith(model, peers, options, (p) => p.current);
}

/** What a peer holds now (place reads `current`, rebalance the previous placement). */
type CurrentOf = (p: PlacementPeer) => LayerRange | undefined;
/** A peer's budget in MB as this step sees it (less the head parts for a pinned end holder). */
type BudgetOf = (p: PlacementPeer) => number;

const wholeBudget: BudgetOf = (p) => p.memoryBudgetMB;

function placeWith(model: PlacementModel, peers: readonly PlacementPeer[], options: PlacementOptions, currentOf: CurrentOf): Placement {
  validate(model, peers, options);
  const headBytes = model.light ? (model.headBytes ?? 0) : 0;
  if (headBytes <= 0) return placeLayers(model, peers, options, currentOf, wholeBudget);
  return placeWithHeads(model, peers, options, headBytes, currentOf);
}

/** Bytes a peer's range takes, head parts included when the range is at an end of the model. */
export function rangeBytes(model: PlacementModel, r: LayerRange): number {
  const atEnd = r.start === 0 || r.end === model.numLayers;
  return rangeLength(r) * model.layerBytes + (model.light && atEnd ? (model.headBytes ?? 0) : 0);
}

/**
 * Light models: the head parts go with the first and the last layer. End holders are chosen first
 * among peers with room for the head and a layer (those already holding that end first, then the
 * roomiest), up to `replication` per end, and pinned to ranges anchored at their end within what the
 * head leaves of their budget. Everyone else places layers with the whole budget; a range that
 * still reaches an end without room for the head gives up its end layers.
 */
function placeWithHeads(model: PlacementModel, peers: readonly PlacementPeer[], options: PlacementOptions, headBytes: number, currentOf: CurrentOf): Placement {
  const n = model.numLayers;
  const headMB = headBytes / BYTES_PER_MB;
  const endCapacity = (p: PlacementPeer) => layerCapacity(model, p.memoryBudgetMB - headMB);
  const holds = (p: PlacementPeer, end: 'first' | 'last') => (end === 'first' ? currentOf(p)?.start === 0 : currentOf(p)?.end === n);
  const pinned = new Map<string, LayerRange>();
  for (const end of ['first', 'last'] as const) {
    const candidates = peers.filter((p) => endCapacity(p) >= 1 && !pinned.has(p.peerId));
    const order = (a: PlacementPeer, b: PlacementPeer) => Number(holds(b, end)) - Number(holds(a, end)) || endCapacity(b) - endCapacity(a) || (a.peerId < b.peerId ? -1 : 1);
    for (const p of firstK(candidates, model.replication, order)) {
      const k = Math.min(n, endCapacity(p));
      pinned.set(p.peerId, end === 'first' ? { start: 0, end: k } : { start: n - k, end: n });
    }
  }
  const laid = placeLayers(
    model,
    peers,
    options,
    (p) => pinned.get(p.peerId) ?? currentOf(p),
    (p) => (pinned.has(p.peerId) ? p.memoryBudgetMB - headMB : p.memoryBudgetMB),
  );
  const budget = new Map<string, number>();
  for (const p of peers) if (laid.assignments.has(p.peerId)) budget.set(p.peerId, p.memoryBudgetMB * BYTES_PER_MB);
  const ranges = new Map<string, LayerRange>();
  for (const [peerId, r] of laid.assignments) {
    const pin = pinned.get(peerId);
    let range: LayerRange | undefined = pin ?? r;
    if (!pin && rangeBytes(model, range) > budget.get(peerId)!) range = withoutEnds(range, n);
    if (range) ranges.set(peerId, range);
  }
  for (const [peerId, pin] of pinned) ranges.set(peerId, pin);
  const sides = [[...pinned.values()].some((r) => r.start === 0), [...pinned.values()].some((r) => r.end === n)];
  const missing = sides.includes(false)
    ? new AigridError('ERR_INSUFFICIENT_MEMORY', `light clients need a peer at each end of ${model.modelId ?? 'the model'} with room for the head parts (${Math.ceil(headMB)} MB) and a layer; ${sides.filter(Boolean).length} end(s) have one`)
    : laid.error;
  return result(model, ranges, missing);
}

/** The range without the model's first and last layers, or nothing when that leaves none. */
function withoutEnds(r: LayerRange, n: number): LayerRange | undefined {
  const start = Math.max(r.start, 1);
  const end = Math.min(r.end, n - 1);
  return end > start ? { start, end } : undefined;
}

/**
 * Lays the layers out. Peers that hold a range (`currentOf`) keep taking part; peers without one
 * are taken fastest first only while the copies needed (replication + spareCopies, counting what
 * the holders hold and each taken peer's minimum span) are not met, so in a large network a change
 * works on the holders and the few peers taken, not on every peer.
 */
function placeLayers(model: PlacementModel, peers: readonly PlacementPeer[], options: PlacementOptions, currentOf: CurrentOf, budgetOf: BudgetOf): Placement {
  const n = model.numLayers;
  const minSpan = Math.ceil(n / Math.max(1, options.maxStages ?? DEFAULT_MAX_STAGES));
  // One pass (no intermediate arrays): at 10,000 peers each pass over the peers costs milliseconds.
  const held: Slot[] = [];
  const idle: Slot[] = [];
  let capacity = 0;
  let heldCopies = 0;
  for (const p of peers) {
    const cap = layerCapacity(model, budgetOf(p));
    if (cap <= 0) continue;
    capacity += cap;
    let current = fit(currentOf(p), n);
    if (current && rangeLength(current) > cap) current = { start: current.start, end: current.start + cap };
    const slot: Slot = { peerId: p.peerId, capacity: cap, gflops: safe(p.gflops), current };
    if (current) {
      held.push(slot);
      heldCopies += rangeLength(current);
    } else idle.push(slot);
  }
  if (capacity < n) {
    // Peers keep what they hold, so nothing reloads when the missing memory comes back.
    const kept = new Map(held.map((s) => [s.peerId, s.current!]));
    return result(model, kept, insufficient(model, held.length + idle.length, capacity));
  }
  const spareCopies = options.spareCopies ?? DEFAULT_SPARE_COPIES;
  const taken = takeIdle(idle, (model.replication + spareCopies) * n - heldCopies, minSpan);
  const slots = held.concat(taken).sort((a, b) => (a.peerId < b.peerId ? -1 : 1));
  // Peers left idle, fastest first: they step in only when a layer stays below the target.
  let rest: Slot[] | undefined;
  const spares = taken.length < idle.length ? () => (rest ??= idleRest(idle, taken)) : undefined;
  const sizes = spanSizes(slots, model.replication * n, minSpan);
  const target = model.replication;
  if (held.length > 0) {
    const kept = layout(slots, sizes, n, target, true, new Map(), spares, minSpan);
    if (Math.min(...kept.cov) > 0) return result(model, kept.ranges);
  }
  const fresh = layout(slots, sizes, n, target, false, new Map(), spares, minSpan);
  if (Math.min(...fresh.cov) > 0) return result(model, fresh.ranges);
  // The greedy windows left a gap: start from one tiled copy, then place the rest around it.
  const tiled = tile(slots, n);
  return result(model, layout(slots, sizes, n, target, false, tiled, spares, minSpan).ranges);
}

/**
 * The fastest idle peers whose minimum spans add up to `copies` layer copies (all of them when they
 * do not), fastest first. Picks a few of many in one pass (firstK), doubling the guess when peers
 * with room for less than a minimum span made it short.
 */
function takeIdle(idle: readonly Slot[], copies: number, minSpan: number): Slot[] {
  if (!(copies > 0) || idle.length === 0) return [];
  for (let k = Math.ceil(copies / minSpan); ; k *= 2) {
    const top = k >= idle.length ? [...idle].sort(bySpeed) : firstK(idle, k, bySpeed);
    let sum = 0;
    for (let i = 0; i < top.length; i++) {
      sum += Math.min(top[i]!.capacity, minSpan);
      if (sum >= copies) return top.slice(0, i + 1);
    }
    if (top.length === idle.length) return top;
  }
}

/** The idle peers not taken, fastest first. */
function idleRest(idle: readonly Slot[], taken: readonly Slot[]): Slot[] {
  const out = new Set(taken);
  return idle.filter((s) => !out.has(s)).sort(bySpeed);
}

/** Re-places after peers joined, left or changed budget, starting from the previous assignments. */
export function rebalance(previous: Placement, peers: readonly PlacementPeer[], options: PlacementOptions = {}): Placement {
  // A lookup rather than a copy of each peer with its `current`: at 10,000 peers a copy per peer
  // is the slowest step of a re-placement.
  const held = previous.assignments;
  return placeWith(previous.model, peers, options, (p) => held.get(p.peerId));
}

/** What changed between two placements: ranges to send (new or different) and peers that lost theirs. */
export function diffAssignments(
  before: ReadonlyMap<string, LayerRange>,
  after: ReadonlyMap<string, LayerRange>,
): { assign: [string, LayerRange][]; unassign: string[] } {
  const assign = [...after].filter(([peerId, r]) => !sameRange(before.get(peerId), r));
  const unassign = [...before.keys()].filter((peerId) => !after.has(peerId));
  return { assign, unassign };
}

/**
 * Places `slots` (kept ranges first when `keep`), grows ranges toward the target, and when some
 * layer is still below it takes `spares` (idle peers, fastest first) one minimum span each at the
 * window most below the target.
 */
function layout(
  slots: readonly Slot[],
  sizes: ReadonlyMap<string, number>,
  n: number,
  target: number,
  keep: boolean,
  seed: ReadonlyMap<string, LayerRange> = new Map(),
  spares?: () => readonly Slot[],
  minSpan = 1,
): { ranges: Map<string, LayerRange>; cov: number[] } {
  const ranges = new Map(seed);
  if (keep) for (const s of slots) if (s.current) ranges.set(s.peerId, s.current);
  const cov = coverageOf(n, ranges.values());
  const rest = slots
    .filter((s) => !ranges.has(s.peerId))
    .sort((a, b) => (sizes.get(b.peerId) ?? 0) - (sizes.get(a.peerId) ?? 0) || bySpeed(a, b));
  for (const s of rest) {
    const length = sizes.get(s.peerId) ?? s.capacity;
    const start = bestWindow(cov, length, target, s.current);
    const range = { start, end: start + length };
    ranges.set(s.peerId, range);
    addCoverage(cov, range);
  }
  extendToTarget(slots, ranges, cov, target);
  if (spares && Math.min(...cov) < target) {
    for (const s of spares()) {
      const length = Math.min(s.capacity, minSpan);
      const start = bestWindow(cov, length, target);
      const range = { start, end: start + length };
      ranges.set(s.peerId, range);
      addCoverage(cov, range);
      if (Math.min(...cov) >= target) break;
    }
  }
  return { ranges, cov };
}

function result(model: PlacementModel, ranges: ReadonlyMap<string, LayerRange>, error?: AigridError): Placement {
  const assignments = byPeerId(ranges);
  const coverage = coverageOf(model.numLayers, assignments.values());
  const replication = Math.min(...coverage);
  const placement: Placement = { model, assignments, coverage, replication };
  if (error) placement.error = error;
  else if (replication < model.replication) placement.warning = underReplicated(model, ranges, replication);
  return placement;
}

/** The ranges ordered by peerId; a copy without sorting when they already are (after a leave). */
function byPeerId(ranges: ReadonlyMap<string, LayerRange>): Map<string, LayerRange> {
  let previous: string | undefined;
  for (const peerId of ranges.keys()) {
    if (previous !== undefined && !(previous < peerId)) return new Map([...ranges].sort(([a], [b]) => (a < b ? -1 : 1)));
    previous = peerId;
  }
  return new Map(ranges);
}

function insufficient(model: PlacementModel, peers: number, capacity: number): AigridError {
  const n = model.numLayers;
  const mb = (bytes: number): number => Math.ceil(bytes / BYTES_PER_MB);
  const name = model.modelId ? `model ${model.modelId}` : 'the model';
  return new AigridError(
    'ERR_INSUFFICIENT_MEMORY',
    `${name} needs ${n} layers of ${mb(model.layerBytes)} MB (${mb(n * model.layerBytes)} MB); ` +
      `the ${peers} peer(s) with room for a layer hold ${capacity}: ${mb((n - capacity) * model.layerBytes)} MB more memory is needed`,
  );
}

function underReplicated(model: PlacementModel, ranges: ReadonlyMap<string, LayerRange>, achieved: number): string {
  const used = [...ranges.values()].reduce((sum, r) => sum + rangeLength(r), 0);
  const short = Math.max(0, model.replication * model.numLayers - used);
  const more = short > 0 ? `; about ${Math.ceil((short * model.layerBytes) / BYTES_PER_MB)} MB more memory would allow it` : '';
  return `every layer is held by at least ${achieved} peer(s), fewer than the ${model.replication} asked${more}`;
}

function fit(r: LayerRange | undefined, n: number): LayerRange | undefined {
  if (!r || !Number.isInteger(r.start) || !Number.isInteger(r.end)) return undefined;
  return r.start >= 0 && r.end <= n && r.start < r.end ? { start: r.start, end: r.end } : undefined;
}

function safe(x: number): number {
  return Number.isFinite(x) && x > 0 ? x : 0;
}

function validate(model: PlacementModel, peers: readonly PlacementPeer[], options: PlacementOptions): void {
  const { numLayers, layerBytes, replication } = model;
  if (!Number.isInteger(numLayers) || numLayers < 1 || !(layerBytes > 0) || !Number.isInteger(replication) || replication < 1) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `placement needs numLayers >= 1, layerBytes > 0, replication >= 1; got ${numLayers}, ${layerBytes}, ${replication}`);
  }
  const spare = options.spareCopies;
  if (spare !== undefined && !(spare === Infinity || (Number.isInteger(spare) && spare >= 0))) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `placement needs spareCopies to be a whole number >= 0 or Infinity; got ${spare}`);
  }
  const twice = listedTwice(peers);
  if (twice !== undefined) throw new AigridError('ERR_INVALID_ARGUMENT', `peer ${twice} is listed twice`);
}

/**
 * Salt of listedTwice's hash, drawn per process: ids ground to collide in it (keys are cheap to
 * grind) cannot be made in advance. It changes only how long the check takes, never an answer.
 */
const ID_HASH_SALT = Math.floor(Math.random() * 2 ** 32) | 0;

/**
 * A peerId that occurs twice, if any. An open-addressing table of indices (salted FNV-1a over the
 * id's UTF-16 units, then a final mix) rather than a Set: it runs on every re-placement of every
 * model, and at 10,000 peers filling a Set of strings costs several times as much.
 */
function listedTwice(peers: readonly PlacementPeer[]): string | undefined {
  if (peers.length < 2) return undefined;
  const size = 1 << (32 - Math.clz32(2 * peers.length - 1));
  const mask = size - 1;
  const table = new Int32Array(size).fill(-1);
  for (let i = 0; i < peers.length; i++) {
    const id = peers[i]!.peerId;
    let h = 0x811c9dc5 ^ ID_HASH_SALT;
    for (let c = 0; c < id.length; c++) h = Math.imul(h ^ id.charCodeAt(c), 0x01000193);
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h ^= h >>> 13;
    for (let at = h & mask; ; at = (at + 1) & mask) {
      const j = table[at]!;
      if (j < 0) {
        table[at] = i;
        break;
      }
      if (peers[j]!.peerId === id) return id;
    }
  }
  return undefined;
}
