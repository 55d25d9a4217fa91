// One network's credit ledger: a balance per key and a journal of what moved, in integers. Credits
// enter only as minted amounts (an owner's grant, a new key's grant, or settled work in free mode),
// and move only by double entry (a client's spend is the peer's earn of the same amount), so the
// balances always add up to what was minted. Balances are always kept; the journal keeps its last
// entries. An operation that would pass the bounds changes nothing and throws.
import { z } from 'zod';
import { AigridError, PeerIdSchema } from '../protocol/index.ts';

export type EntryKind = 'grant' | 'earn' | 'spend' | 'mint';

export interface LedgerEntry {
  seq: number;
  /** ms since the epoch. */
  at: number;
  kind: EntryKind;
  key: string;
  amount: number;
  /** The other side: the client of an earn or a mint, the peer of a spend, the owner of a grant. */
  counterparty?: string;
  modelId?: string;
}

/** Entries kept per network, the most recent. */
export const MAX_JOURNAL_ENTRIES = 256;
const MAX = Number.MAX_SAFE_INTEGER;
const amount = z.number().int().min(-MAX).max(MAX);

export const StoredLedgerSchema = z.object({
  seq: z.number().int().min(0),
  minted: z.number().int().min(0).max(MAX),
  moved: z.number().int().min(0).max(MAX),
  /** [key, balance, granted: 1 when the key had the network's grant for new keys]. */
  accounts: z.array(z.tuple([PeerIdSchema, amount, z.union([z.literal(0), z.literal(1)])])),
  journal: z.array(
    z.object({
      seq: z.number().int().min(0),
      at: z.number().int().min(0),
      kind: z.enum(['grant', 'earn', 'spend', 'mint']),
      key: PeerIdSchema,
      amount: z.number().int().min(1).max(MAX),
      counterparty: PeerIdSchema.optional(),
      modelId: z.string().max(256).optional(),
    }),
  ).max(MAX_JOURNAL_ENTRIES),
}).refine((l) => l.accounts.reduce((sum, [, balance]) => sum + balance, 0) === l.minted, 'the balances do not add up to the credits minted');

/** credits.json in the data folder: each network's ledger. */
export const CreditsFileSchema = z.object({ version: z.literal(1), networks: z.record(z.string(), StoredLedgerSchema) });

export type StoredLedger = z.infer<typeof StoredLedgerSchema>;
export type StoredCredits = Record<string, StoredLedger>;

interface Account {
  balance: number;
  granted: boolean;
}

/** How many accounts the ledgers of one server may hold together, and how many they hold. */
export interface AccountRoom {
  held: number;
  readonly max: number;
}

export class Ledger {
  private readonly accounts = new Map<string, Account>();
  private journal: LedgerEntry[] = [];
  private seq = 0;
  /** All credits ever minted (grants and free-mode mints): the sum of the balances. */
  private minted = 0;
  /** All credits moved from clients to peers (each spend's matching earn). */
  private moved = 0;
  /** When this ledger last changed (ms since the epoch). */
  changedAt = 0;

  constructor(
    private readonly room: AccountRoom,
    stored?: StoredLedger,
    private readonly now: () => number = Date.now,
  ) {
    // What the data folder kept (its schema refused a ledger that does not add up).
    if (!stored) return;
    for (const [key, balance, granted] of stored.accounts) this.accounts.set(key, { balance, granted: granted === 1 });
    room.held += this.accounts.size;
    this.journal = stored.journal.map((e) => ({ ...e }));
    [this.seq, this.minted, this.moved] = [stored.seq, stored.minted, stored.moved];
  }

  balance(key: string): number {
    return this.accounts.get(key)?.balance ?? 0;
  }

  /** Whether the key already had the network's grant for new keys. */
  granted(key: string): boolean {
    return this.accounts.get(key)?.granted === true;
  }

  get size(): number {
    return this.accounts.size;
  }

  /** Mints `amount` to `key`: an owner's grant (`by` the owner), or a new key's (`newKey`). */
  grant(key: string, amount: number, by?: string, newKey = false): void {
    this.check(amount);
    this.mintable(amount);
    const account = this.open([key]).get(key)!;
    this.fits(account.balance + amount);
    account.balance += amount;
    if (newKey) account.granted = true;
    this.minted += amount;
    this.record('grant', key, amount, by);
  }

  /** Free mode: settled work is credited to the peer as minted credits. */
  mint(peer: string, amount: number, client: string, modelId: string): void {
    this.check(amount);
    this.mintable(amount);
    const account = this.open([peer]).get(peer)!;
    this.fits(account.balance + amount);
    account.balance += amount;
    this.minted += amount;
    this.record('mint', peer, amount, client, modelId);
  }

  /** The client pays the peer: a spend and its matching earn. */
  transfer(client: string, peer: string, amount: number, modelId: string): void {
    this.check(amount);
    if (client === peer) throw new AigridError('ERR_INVALID_ARGUMENT', `${client} cannot pay itself`);
    if (this.moved + amount > MAX) throw new AigridError('ERR_INVALID_ARGUMENT', 'the ledger has moved as many credits as it counts');
    const accounts = this.open([client, peer]);
    const [from, to] = [accounts.get(client)!, accounts.get(peer)!];
    this.fits(from.balance - amount);
    this.fits(to.balance + amount);
    from.balance -= amount;
    to.balance += amount;
    this.moved += amount;
    this.record('spend', client, amount, peer, modelId);
    this.record('earn', peer, amount, client, modelId);
  }

  /** The largest balances, largest first (ties by key). */
  top(n: number): [string, number][] {
    return [...this.accounts].map(([key, a]): [string, number] => [key, a.balance]).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, n);
  }

  /** The journal's kept entries, oldest first. */
  entries(): LedgerEntry[] {
    return this.journal.map((e) => ({ ...e }));
  }

  /** The invariants: the balances add up to what was minted; the kept journal's spends equal its earns. */
  audit(): { balances: number; minted: number; moved: number; holds: boolean } {
    let balances = 0;
    for (const a of this.accounts.values()) balances += a.balance;
    const spent = this.journal.filter((e) => e.kind === 'spend').reduce((s, e) => s + e.amount, 0);
    const earned = this.journal.filter((e) => e.kind === 'earn').reduce((s, e) => s + e.amount, 0);
    return { balances, minted: this.minted, moved: this.moved, holds: balances === this.minted && spent === earned };
  }

  stored(): StoredLedger {
    return {
      seq: this.seq,
      minted: this.minted,
      moved: this.moved,
      accounts: [...this.accounts].map(([key, a]): [string, number, 0 | 1] => [key, a.balance, a.granted ? 1 : 0]),
      journal: this.entries(),
    };
  }

  /** Its accounts leave the server's count (the ledger is dropped). */
  release(): void {
    this.room.held -= this.accounts.size;
    this.accounts.clear();
  }

  /** The accounts of `keys`, opened when new; throws, opening none, when the server holds as many as it takes. */
  private open(keys: string[]): Map<string, Account> {
    const missing = keys.filter((k) => !this.accounts.has(k));
    if (this.room.held + missing.length > this.room.max) {
      // Empty accounts hold nothing worth keeping (a new key's grant mark aside): they make room first.
      for (const [key, a] of this.accounts) {
        if (this.room.held + missing.length <= this.room.max) break;
        if (a.balance === 0 && !a.granted && !keys.includes(key)) {
          this.accounts.delete(key);
          this.room.held--;
        }
      }
      if (this.room.held + missing.length > this.room.max) throw new AigridError('ERR_REGISTRY_FULL', `the server keeps ${this.room.max} credit accounts, the most it takes`);
    }
    for (const key of missing) this.accounts.set(key, { balance: 0, granted: false });
    this.room.held += missing.length;
    return this.accounts;
  }

  private check(amount: number): void {
    if (!Number.isSafeInteger(amount) || amount <= 0) throw new AigridError('ERR_INVALID_ARGUMENT', `an amount of credits is a positive integer, not ${amount}`);
  }

  private mintable(amount: number): void {
    if (this.minted + amount > MAX) throw new AigridError('ERR_INVALID_ARGUMENT', 'the ledger has minted as many credits as it counts');
  }

  private fits(balance: number): void {
    if (Math.abs(balance) > MAX) throw new AigridError('ERR_INVALID_ARGUMENT', 'a balance would pass what the ledger counts');
  }

  private record(kind: EntryKind, key: string, amount: number, counterparty?: string, modelId?: string): void {
    const at = this.now();
    this.changedAt = at;
    this.journal.push({ seq: ++this.seq, at, kind, key, amount, ...(counterparty ? { counterparty } : {}), ...(modelId ? { modelId } : {}) });
    if (this.journal.length <= MAX_JOURNAL_ENTRIES) return;
    this.journal.splice(0, this.journal.length - MAX_JOURNAL_ENTRIES);
    // A spend and its earn go together: an earn whose spend was cut goes too.
    if (this.journal[0]!.kind === 'earn') this.journal.shift();
  }
}
