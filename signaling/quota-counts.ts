// Route requests per client per network over the last minute and the last hour, what a network's
// quota policy decides on. Kept only for networks with a quota policy, in slots (5 s for the
// minute, 1 min for the hour) so a client costs a fixed 144 bytes; the least recently seen
// clients go past the bound (their counts start again from zero).

const MINUTE_SLOTS = 12;
const MINUTE_SLOT_MS = 5_000;
const HOUR_SLOTS = 60;
const HOUR_SLOT_MS = 60_000;
export const MAX_QUOTA_CLIENTS = 50_000;

/** Counts in a ring of slots of `slotMs` each, the oldest cleared as time moves on. */
class Window {
  private readonly counts: Uint16Array;
  private last = 0;

  constructor(
    private readonly slots: number,
    private readonly slotMs: number,
    now: number,
  ) {
    this.counts = new Uint16Array(slots);
    this.last = Math.floor(now / slotMs);
  }

  add(now: number): void {
    const slot = this.advance(now);
    const i = slot % this.slots;
    if (this.counts[i]! < 0xffff) this.counts[i]!++;
  }

  total(now: number): number {
    this.advance(now);
    let sum = 0;
    for (const n of this.counts) sum += n;
    return sum;
  }

  private advance(now: number): number {
    const slot = Math.floor(now / this.slotMs);
    const steps = Math.min(slot - this.last, this.slots);
    for (let s = 1; s <= steps; s++) this.counts[(this.last + s) % this.slots] = 0;
    if (slot > this.last) this.last = slot;
    return this.last;
  }
}

export interface RequestCounts {
  /** Requests in the last 60 s (in 5 s slots), this one included. */
  minute: number;
  /** Requests in the last 60 min (in 1 min slots), this one included. */
  hour: number;
}

export class QuotaCounts {
  private readonly clients = new Map<string, { minute: Window; hour: Window }>();

  constructor(
    private readonly max = MAX_QUOTA_CLIENTS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one request of `client` on `network` and answers its counts with it. */
  record(network: string, client: string): RequestCounts {
    const key = `${network}\u0000${client}`;
    const now = this.now();
    let entry = this.clients.get(key);
    if (entry) this.clients.delete(key); // most recently seen last
    else entry = { minute: new Window(MINUTE_SLOTS, MINUTE_SLOT_MS, now), hour: new Window(HOUR_SLOTS, HOUR_SLOT_MS, now) };
    this.clients.set(key, entry);
    if (this.clients.size > this.max) this.clients.delete(this.clients.keys().next().value!);
    entry.minute.add(now);
    entry.hour.add(now);
    return { minute: entry.minute.total(now), hour: entry.hour.total(now) };
  }

  get size(): number {
    return this.clients.size;
  }
}
