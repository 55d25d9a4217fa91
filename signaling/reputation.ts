// What the coordinator knows of each key's work: sessions clients checked and found right, found
// wrong, and hops that timed out. A key whose wrong results outweigh its verified work is left
// out of placement and routes; a key with little verified work is a newcomer, whose routes the
// clients check more often. Verdicts come from clients, so each client counts once per key and
// window (a client can neither push a key down nor lift one up by repeating itself), and only
// about peers the coordinator routed it through lately. A wrong result counts only when the
// client proved it with signed evidence (accusation.ts), so made-up clients cannot push an honest
// key out; a client whose evidence was forged is not heard for an hour.
export interface KeyRecord {
  verified: number;
  wrong: number;
  timeouts: number;
}

/** A key's record with what follows from it. */
export interface KeyStanding extends KeyRecord {
  excluded: boolean;
  newcomer: boolean;
}

export interface Verdict {
  peerId: string;
  result: 'verified' | 'wrong' | 'timeout';
}

/** Verified sessions under which a key is a newcomer. */
export const NEWCOMER_VERIFIED = 10;
/** A wrong result outweighs this many verified ones. */
const WRONG_WEIGHT = 5;
/** One client's blame of one key counts once in this window... */
const BLAME_WINDOW_MS = 10 * 60_000;
/** ...and its praise once in this one: verified work is earned from many clients over time. */
const PRAISE_WINDOW_MS = 60_000;
/** How long a client may report on a peer after being routed through it. */
const ROUTED_MS = 10 * 60_000;
/** How long a client that sent forged evidence is not heard. */
export const FORGER_IGNORED_MS = 60 * 60_000;
const MAX_KEYS = 100_000;
const MAX_ROUTED_PER_CLIENT = 256;
const MAX_CLIENTS = 10_000;

export class Reputation {
  private readonly keys = new Map<string, KeyRecord>();
  /** `${client} ${peer} ${result}` -> when it last counted. */
  private readonly counted = new Map<string, number>();
  /** client -> peer -> when the coordinator last routed the client through it. */
  private readonly routed = new Map<string, Map<string, number>>();
  /** Clients that sent forged evidence -> until when their reports are ignored. */
  private readonly forgers = new Map<string, number>();

  /** `restored`: the records kept before a restart. `onChange` is called after a record changes. */
  constructor(
    restored: Record<string, KeyRecord> = {},
    private readonly onChange: () => void = () => {},
  ) {
    for (const [peerId, r] of Object.entries(restored).slice(-MAX_KEYS)) this.keys.set(peerId, { ...r });
  }

  /** Every key's record, as the data folder keeps them. */
  records(): Record<string, KeyRecord> {
    return Object.fromEntries(this.keys);
  }

  /** Records as another signaling process of the deployment counted them (redis-cluster.ts); not reported to onChange. */
  load(records: Record<string, KeyRecord>): void {
    for (const [peerId, r] of Object.entries(records)) {
      this.keys.delete(peerId);
      this.keys.set(peerId, { ...r });
      if (this.keys.size > MAX_KEYS) this.keys.delete(this.keys.keys().next().value!);
    }
  }

  of(peerId: string): KeyRecord {
    return this.keys.get(peerId) ?? { verified: 0, wrong: 0, timeouts: 0 };
  }

  /** Left out of placement and routes: its wrong results outweigh its verified work. */
  excluded(peerId: string): boolean {
    const r = this.keys.get(peerId);
    return r !== undefined && r.wrong > 0 && r.wrong * WRONG_WEIGHT > r.verified;
  }

  newcomer(peerId: string): boolean {
    return this.of(peerId).verified < NEWCOMER_VERIFIED;
  }

  standing(peerId: string): KeyStanding {
    return { ...this.of(peerId), excluded: this.excluded(peerId), newcomer: this.newcomer(peerId) };
  }

  /** The coordinator routed `client` through these peers: it may report on them for a while. */
  routedThrough(client: string, peers: readonly string[], now = Date.now()): void {
    let mine = this.routed.get(client);
    if (!mine) {
      if (this.routed.size >= MAX_CLIENTS) this.routed.delete(this.routed.keys().next().value!);
      this.routed.set(client, (mine = new Map()));
    }
    for (const peer of peers) {
      mine.delete(peer);
      mine.set(peer, now);
      if (mine.size > MAX_ROUTED_PER_CLIENT) mine.delete(mine.keys().next().value!);
    }
  }

  /**
   * Applies a client's verdicts; returns how many counted. A `wrong` verdict does not count here:
   * only an accusation whose evidence convicts the peer does (convict()).
   */
  record(client: string, verdicts: readonly Verdict[], now = Date.now()): number {
    if (this.ignoring(client, now)) return 0;
    const mine = this.routed.get(client);
    let counted = 0;
    for (const { peerId, result } of verdicts) {
      if (peerId === client || result === 'wrong') continue;
      const routedAt = mine?.get(peerId);
      if (routedAt === undefined || now - routedAt > ROUTED_MS) continue;
      const key = `${client} ${peerId} ${result}`;
      const window = result === 'verified' ? PRAISE_WINDOW_MS : BLAME_WINDOW_MS;
      if (now - (this.counted.get(key) ?? -Infinity) < window) continue;
      this.remember(key, now);
      const r = this.entry(peerId);
      if (result === 'verified') r.verified++;
      else r.timeouts++;
      counted++;
    }
    if (counted) this.onChange();
    return counted;
  }

  /** Counts a wrong result the evidence proved; once per client and key in the blame window. Whether it counted. */
  convict(client: string, peerId: string, now = Date.now()): boolean {
    if (peerId === client || this.ignoring(client, now)) return false;
    const key = `${client} ${peerId} wrong`;
    if (now - (this.counted.get(key) ?? -Infinity) < BLAME_WINDOW_MS) return false;
    this.remember(key, now);
    this.entry(peerId).wrong++;
    this.onChange();
    return true;
  }

  /** The client sent forged evidence: nothing it reports counts for a while. */
  forged(client: string, now = Date.now()): void {
    this.forgers.delete(client);
    this.forgers.set(client, now + FORGER_IGNORED_MS);
    if (this.forgers.size > MAX_CLIENTS) this.forgers.delete(this.forgers.keys().next().value!);
  }

  ignoring(client: string, now = Date.now()): boolean {
    const until = this.forgers.get(client);
    if (until !== undefined && until <= now) this.forgers.delete(client);
    return until !== undefined && until > now;
  }

  private entry(peerId: string): KeyRecord {
    let r = this.keys.get(peerId);
    if (!r) {
      if (this.keys.size >= MAX_KEYS) this.keys.delete(this.keys.keys().next().value!);
      this.keys.set(peerId, (r = { verified: 0, wrong: 0, timeouts: 0 }));
    }
    return r;
  }

  private remember(key: string, now: number): void {
    this.counted.delete(key);
    this.counted.set(key, now);
    if (this.counted.size > MAX_KEYS) this.counted.delete(this.counted.keys().next().value!);
  }
}
