// Building blocks of placement: how many layers each peer takes, where its span goes, and how
// spare capacity repairs coverage. Pure functions over plain data; placement.ts composes them.

/** Layers [start, end) of a model. */
export interface LayerRange {
  start: number;
  end: number;
}

/** A peer as the layout sees it: whole layers it can hold (>= 1), its speed, its range if any. */
export interface Slot {
  peerId: string;
  capacity: number;
  gflops: number;
  /** What the peer holds now; layout prefers windows that overlap it. */
  current?: LayerRange;
}

/** A peer that reports 0 GFLOP/s still gets the minimum span; the weight only has to be positive. */
const MIN_WEIGHT = 1e-3;

export function rangeLength(r: LayerRange): number {
  return r.end - r.start;
}

export function sameRange(a: LayerRange | undefined, b: LayerRange | undefined): boolean {
  return a?.start === b?.start && a?.end === b?.end;
}

/** How many ranges hold each layer. */
export function coverageOf(numLayers: number, ranges: Iterable<LayerRange>): number[] {
  const diff = new Array<number>(numLayers + 1).fill(0);
  for (const r of ranges) {
    const start = Math.max(0, r.start);
    const end = Math.min(numLayers, r.end);
    if (end <= start) continue;
    diff[start]! += 1;
    diff[end]! -= 1;
  }
  const cov = new Array<number>(numLayers);
  let running = 0;
  for (let l = 0; l < numLayers; l++) cov[l] = running += diff[l]!;
  return cov;
}

/** Orders by speed, then peerId: the one tie-break every step uses. */
export function bySpeed(a: Slot, b: Slot): number {
  return b.gflops - a.gflops || (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0);
}

/**
 * Span length per peer. When the peers can hold no more than `demand` layer copies, each takes all
 * it can. Otherwise the demand is shared in proportion to speed (a stage's time is its layers over
 * its GFLOP/s, so equal ratios keep the pipeline balanced), never below `minSpan` (which bounds the
 * hops of a chain) and never above capacity.
 */
export function spanSizes(slots: readonly Slot[], demand: number, minSpan: number): Map<string, number> {
  const sizes = new Map<string, number>();
  const total = slots.reduce((sum, s) => sum + s.capacity, 0);
  const floors = slots.map((s) => Math.min(s.capacity, minSpan));
  if (total <= demand || floors.reduce((a, b) => a + b, 0) >= demand) {
    slots.forEach((s, i) => sizes.set(s.peerId, total <= demand ? s.capacity : floors[i]!));
    return sizes;
  }
  const weight = (s: Slot): number => Math.max(s.gflops, MIN_WEIGHT);
  const share = (lambda: number): number[] => slots.map((s, i) => Math.min(s.capacity, Math.max(floors[i]!, lambda * weight(s))));
  const sumAt = (lambda: number): number => share(lambda).reduce((a, b) => a + b, 0);
  let lo = 0;
  let hi = Math.max(...slots.map((s) => s.capacity / weight(s)));
  for (let i = 0; i < 64; i++) {
    const mid = (lo + hi) / 2;
    if (sumAt(mid) >= demand) hi = mid;
    else lo = mid;
  }
  const exact = share(hi);
  const whole = exact.map((x) => Math.floor(x + 1e-9));
  let missing = demand - whole.reduce((a, b) => a + b, 0);
  // Round up the largest remainders first so the total meets the demand deterministically.
  const order = slots
    .map((s, i) => ({ s, i, frac: exact[i]! - whole[i]! }))
    .filter((x) => x.frac > 1e-9 && whole[x.i]! < x.s.capacity)
    .sort((a, b) => b.frac - a.frac || bySpeed(a.s, b.s));
  for (const { i } of order) {
    if (missing <= 0) break;
    whole[i]! += 1;
    missing--;
  }
  slots.forEach((s, i) => sizes.set(s.peerId, whole[i]!));
  return sizes;
}

/**
 * Start of the best window of `length` layers: the most coverage missing below `target`, then the
 * most overlap with `prefer` (layers the peer already holds), then the least covered, then the
 * lowest start.
 */
export function bestWindow(cov: readonly number[], length: number, target: number, prefer?: LayerRange): number {
  const n = cov.length;
  const deficit = (l: number): number => Math.max(0, target - cov[l]!);
  const held = (l: number): number => (prefer && l >= prefer.start && l < prefer.end ? 1 : 0);
  let d = 0;
  let o = 0;
  let c = 0;
  for (let l = 0; l < length; l++) {
    d += deficit(l);
    o += held(l);
    c += cov[l]!;
  }
  let best = { s: 0, d, o, c };
  for (let s = 1; s + length <= n; s++) {
    const out = s - 1;
    const into = s + length - 1;
    d += deficit(into) - deficit(out);
    o += held(into) - held(out);
    c += cov[into]! - cov[out]!;
    if (d > best.d || (d === best.d && (o > best.o || (o === best.o && c < best.c)))) best = { s, d, o, c };
  }
  return best.s;
}

/**
 * The first `k` items in `order`, in order: one pass over `items` keeping a sorted buffer, so
 * picking a few of many peers costs about one comparison per peer rather than a sort of them all.
 */
export function firstK<T>(items: readonly T[], k: number, order: (a: T, b: T) => number): T[] {
  const top: T[] = [];
  if (!(k > 0)) return top;
  for (const x of items) {
    if (top.length >= k && order(x, top[top.length - 1]!) >= 0) continue;
    let lo = 0;
    let hi = top.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (order(x, top[mid]!) < 0) hi = mid;
      else lo = mid + 1;
    }
    top.splice(lo, 0, x);
    if (top.length > k) top.pop();
  }
  return top;
}

/** Adds one range to the coverage counts. */
export function addCoverage(cov: number[], r: LayerRange, delta = 1): void {
  for (let l = r.start; l < r.end; l++) cov[l]! += delta;
}

/**
 * Grows ranges that have spare capacity over layers below `target`, least covered first. Growing
 * keeps what a peer has loaded (it only adds layers), so it is how coverage heals after a leave.
 */
export function extendToTarget(slots: readonly Slot[], ranges: Map<string, LayerRange>, cov: number[], target: number): void {
  const n = cov.length;
  // Sorted when first needed: when every layer already meets the target (the usual case in a
  // large network) the sort of every slot is skipped.
  let ordered: Slot[] | undefined;
  for (let level = 0; level < target; level++) {
    for (let l = 0; l < n; l++) {
      while (cov[l]! <= level) {
        let pick: { slot: Slot; next: LayerRange; cost: number } | null = null;
        ordered ??= [...slots].sort(bySpeed);
        for (const slot of ordered) {
          const r = ranges.get(slot.peerId);
          if (!r || (l >= r.start && l < r.end)) continue;
          const next = { start: Math.min(r.start, l), end: Math.max(r.end, l + 1) };
          const cost = rangeLength(next) - rangeLength(r);
          if (rangeLength(next) > slot.capacity) continue;
          if (!pick || cost < pick.cost) pick = { slot, next, cost };
        }
        if (!pick) break;
        const before = ranges.get(pick.slot.peerId)!;
        addCoverage(cov, { start: pick.next.start, end: before.start });
        addCoverage(cov, { start: before.end, end: pick.next.end });
        ranges.set(pick.slot.peerId, pick.next);
      }
    }
  }
}

/** Lays the largest peers end to end from layer 0: one full copy whenever capacity suffices. */
export function tile(slots: readonly Slot[], n: number): Map<string, LayerRange> {
  const ranges = new Map<string, LayerRange>();
  let at = 0;
  for (const slot of [...slots].sort((a, b) => b.capacity - a.capacity || bySpeed(a, b))) {
    if (at >= n) break;
    const start = Math.min(at, n - slot.capacity);
    ranges.set(slot.peerId, { start, end: start + slot.capacity });
    at = start + slot.capacity;
  }
  return ranges;
}
