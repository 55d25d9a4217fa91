// Tokens and calls counted per (other party, layer range) until they are reported: a serving peer
// counts what it ran for each client, a client what it received through each peer (credits; the
// server settles what both sides report). Bounded: a party beyond the cap is not counted.
import { MAX_USAGE_CALLS, MAX_USAGE_TOKENS } from '../../protocol/index.ts';

export interface UsageCount {
  party: string;
  start: number;
  end: number;
  tokens: number;
  calls: number;
}

/** Counts kept at most between two reports (a peer's sessions are capped at 1024 in all). */
export const MAX_USAGE_COUNTS = 1024;

export class UsageCounts {
  private readonly counts = new Map<string, UsageCount>();

  constructor(private readonly max = MAX_USAGE_COUNTS) {}

  get size(): number {
    return this.counts.size;
  }

  add(party: string, start: number, end: number, tokens: number, calls = 0): void {
    const key = `${party} ${start} ${end}`;
    let count = this.counts.get(key);
    if (!count) {
      if (this.counts.size >= this.max) return;
      this.counts.set(key, (count = { party, start, end, tokens: 0, calls: 0 }));
    }
    // Held at the protocol's bound for one entry, far past any report interval's real work.
    count.tokens = Math.min(count.tokens + tokens, MAX_USAGE_TOKENS);
    count.calls = Math.min(count.calls + calls, MAX_USAGE_CALLS);
  }

  /** Forgets what was counted for a party (a client found it wrong). */
  drop(party: string): void {
    for (const [key, count] of this.counts) if (count.party === party) this.counts.delete(key);
  }

  /** Takes up to `n` counts for a report, oldest first; they are forgotten here. */
  take(n: number): UsageCount[] {
    const taken: UsageCount[] = [];
    for (const [key, count] of this.counts) {
      if (taken.length >= n) break;
      this.counts.delete(key);
      if (count.tokens > 0 || count.calls > 0) taken.push(count);
    }
    return taken;
  }
}
