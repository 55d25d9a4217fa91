// Offer collisions ("glare"): two peers send each other an offer at the same time. The server
// remembers unanswered offers per ordered pair and lets the smaller peerId win, the same rule
// the client applies locally, so both sides agree without another round trip.

export const OFFER_TTL_MS = 30_000;

/** What to do with an offer from -> to. */
export type OfferVerdict =
  | { relay: true; glareTo?: undefined }
  /** Relay, and tell `glareTo` (the other side) that its earlier offer lost. */
  | { relay: true; glareTo: string }
  /** Drop it; tell the sender that the other side's pending offer wins. */
  | { relay: false };

export class OfferBook {
  /** network -> "from\nto" -> expiry time. */
  private readonly pending = new Map<string, Map<string, number>>();

  constructor(
    private readonly ttlMs = OFFER_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  offer(network: string, from: string, to: string): OfferVerdict {
    const pairs = this.pairs(network);
    const now = this.now();
    const reverse = pairKey(to, from);
    const expiry = pairs.get(reverse);
    if (expiry !== undefined && expiry <= now) pairs.delete(reverse);
    const crossing = expiry !== undefined && expiry > now;
    if (crossing && from > to) return { relay: false };
    pairs.set(pairKey(from, to), now + this.ttlMs);
    if (!crossing) return { relay: true };
    pairs.delete(reverse);
    return { relay: true, glareTo: to };
  }

  /** An answer from -> to settles the offer to -> from. */
  answered(network: string, from: string, to: string): void {
    this.delete(network, pairKey(to, from));
  }

  /** Forgets every offer to or from a peer that left. */
  forget(network: string, peerId: string): void {
    const pairs = this.pending.get(network);
    if (!pairs) return;
    for (const key of pairs.keys()) {
      const [a, b] = key.split('\n');
      if (a === peerId || b === peerId) pairs.delete(key);
    }
    if (pairs.size === 0) this.pending.delete(network);
  }

  /** Drops expired offers so offers that are never answered cannot pile up. */
  sweep(): void {
    const now = this.now();
    for (const [network, pairs] of this.pending) {
      for (const [key, expiry] of pairs) if (expiry <= now) pairs.delete(key);
      if (pairs.size === 0) this.pending.delete(network);
    }
  }

  get size(): number {
    let n = 0;
    for (const pairs of this.pending.values()) n += pairs.size;
    return n;
  }

  private pairs(network: string): Map<string, number> {
    let pairs = this.pending.get(network);
    if (!pairs) {
      pairs = new Map();
      this.pending.set(network, pairs);
    }
    return pairs;
  }

  private delete(network: string, key: string): void {
    const pairs = this.pending.get(network);
    if (!pairs) return;
    pairs.delete(key);
    if (pairs.size === 0) this.pending.delete(network);
  }
}

// peerIds never contain a newline (PeerIdSchema), so the key is unambiguous.
function pairKey(from: string, to: string): string {
  return `${from}\n${to}`;
}
