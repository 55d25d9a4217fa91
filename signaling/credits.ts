// Credits per key and network (protocol/credits.ts). Serving peers report with their status the
// tokens they ran per client and layer range; clients report (`usage`) the tokens they received per
// peer and range; each report is taken only for a (client, peer, model, range) the coordinator
// routed together lately (usage-pairs.ts), within what the time since that side's last report
// allows. The server settles the smaller of the two counts: tokens x layers x pricePerToken (plus
// calls x pricePerCall), paid by the client to the peer in metered and credits-required networks,
// minted to the peer in free ones. So a peer cannot take more than its client confirms, and a
// colluding pair moves only the client's own credits (in free mode it mints no faster than the
// report bounds allow: free-mode credits record contributions, they buy nothing until the owner
// meters the network). A client that withholds its reports pays nothing for that work, but in a
// credits-required network the work its peers reported lately and it did not confirm counts
// against its balance when it asks for a route. The ledgers (ledger.ts) outlive a restart in the
// data folder and a network's members leaving; the mode and prices are the network's rules.
import {
  AigridError,
  DEFAULT_CREDIT_RULES,
  errorMessage,
  type ClientMessage,
  type CreditRules,
  type Hop,
  type ModelSpec,
  type ServedUsage,
  type ReceivedUsage,
  type ServerMessage,
} from '../protocol/index.ts';
import type { Governance } from './governance.ts';
import { Ledger, type AccountRoom, type EntryKind, type LedgerEntry, type StoredCredits } from './ledger.ts';
import { TokenBucket } from './rate-limit.ts';
import { UsagePairs, type UsagePair, type UsageSide } from './usage-pairs.ts';

type Msg<T extends ClientMessage['type']> = Extract<ClientMessage, { type: T }>;
type Reply = (message: ServerMessage) => void;

/** What /metrics counts of the ledgers: credits by journal entry kind (no keys, no networks). */
export interface CreditMetrics {
  credited(kind: EntryKind, amount: number): void;
}

/** Accounts all ledgers of a server hold together, and ledgers (networks) at most. */
export const MAX_CREDIT_ACCOUNTS = 100_000;
export const MAX_LEDGERS = 1024;
/**
 * The most tokens (calls) one side may report for one pair per second since the pair was made
 * (only lies reach it); unused room is kept for MAX_ROOM_SECONDS, so a report after a long
 * session fits, and many small reports add up to no more than one large one.
 */
export const MAX_PAIR_TOKENS_PER_SECOND = 100_000;
export const MAX_PAIR_CALLS_PER_SECOND = 1_000;
const MAX_ROOM_SECONDS = 600;
/**
 * Work a peer reported for a client that the client has not confirmed counts against the client's
 * balance in credits-required networks while the peer reported it this recently: a client that
 * withholds its reports is refused once that passes its balance.
 */
export const UNCONFIRMED_MS = 5 * 60_000;
/** New keys granted per network per hour at most: made-up keys cannot mint without end. */
export const MAX_NEW_KEY_GRANTS_PER_HOUR = 100;
/** Credits messages per second per connection, and bursts (besides the connection's own rate). */
const RATES: Record<'usage' | 'credits' | 'grant', readonly [number, number]> = { usage: [5, 20], credits: [5, 20], grant: [5, 20] };

export interface CreditsOptions {
  governance: Governance;
  /** The ledgers kept before a restart. */
  restored?: StoredCredits;
  /** A ledger changed (the data folder writes them soon). */
  onChange?: () => void;
  metrics?: CreditMetrics;
  log: (line: string) => void;
  now?: () => number;
  maxAccounts?: number;
  maxLedgers?: number;
}

export class Credits {
  private readonly ledgers = new Map<string, Ledger>();
  private readonly room: AccountRoom;
  private readonly pairs = new UsagePairs({ tokens: MAX_PAIR_TOKENS_PER_SECOND, calls: MAX_PAIR_CALLS_PER_SECOND });
  private readonly rates = new WeakMap<object, Map<string, TokenBucket>>();
  /** Per network with members: the hourly allowance of new-key grants. */
  private readonly newKeyGrants = new Map<string, TokenBucket>();
  private readonly now: () => number;
  private lastLog = -Infinity;

  constructor(private readonly o: CreditsOptions) {
    this.now = o.now ?? Date.now;
    this.room = { held: 0, max: o.maxAccounts ?? MAX_CREDIT_ACCOUNTS };
    for (const [network, stored] of Object.entries(o.restored ?? {})) this.ledgers.set(network, new Ledger(this.room, stored, this.now));
  }

  /** The network's mode and prices (its owner's, else the defaults). */
  rules(network: string): CreditRules {
    return { ...DEFAULT_CREDIT_RULES, ...this.o.governance.of(network)?.credits };
  }

  balance(network: string, key: string): number {
    return this.ledgers.get(network)?.balance(key) ?? 0;
  }

  /** The journal's kept entries, oldest first. */
  journal(network: string): LedgerEntry[] {
    return this.ledgers.get(network)?.entries() ?? [];
  }

  /** The ledger's invariants, checked now (ledger.ts audit). */
  audit(network: string): ReturnType<Ledger['audit']> {
    return this.ledgers.get(network)?.audit() ?? { balances: 0, minted: 0, moved: 0, holds: true };
  }

  /** Pairs waiting for settlement in a network (bounded; for tests). */
  pending(network: string, client: string, peer: string, modelId: string, start: number, end: number): { fromClient: UsageSide; fromPeer: UsageSide } | undefined {
    const pair = this.pairs.get(network, client, peer, modelId, start, end);
    return pair && { fromClient: { ...pair.fromClient }, fromPeer: { ...pair.fromPeer } };
  }

  pairCount(network: string): number {
    return this.pairs.size(network);
  }

  /** Every ledger, as the data folder keeps them. */
  stored(): StoredCredits {
    return Object.fromEntries([...this.ledgers].map(([network, ledger]) => [network, ledger.stored()]));
  }

  /**
   * One credits message from `conn` (a connection: its rate is counted apart). A request over its
   * rate is answered ERR_RATE_LIMITED with its id; a usage report over it is dropped.
   */
  answer(conn: object, network: string, peerId: string, msg: Msg<'usage'> | Msg<'credits'> | Msg<'grant'>, reply: Reply): void {
    if (!this.admits(conn, msg.type)) {
      if (msg.type !== 'usage') reply({ type: 'error', code: 'ERR_RATE_LIMITED', message: `more than ${RATES[msg.type][0]} ${msg.type} messages per second`, ref: msg.type, requestId: msg.requestId });
      return;
    }
    if (msg.type === 'usage') return this.received(network, peerId, msg, reply);
    this.handle(network, peerId, msg, reply);
  }

  /** Whether a credits message from this connection is within its rate. */
  private admits(conn: object, type: 'usage' | 'credits' | 'grant'): boolean {
    let buckets = this.rates.get(conn);
    if (!buckets) this.rates.set(conn, (buckets = new Map()));
    let bucket = buckets.get(type);
    if (!bucket) buckets.set(type, (bucket = new TokenBucket(...RATES[type])));
    return bucket.take();
  }

  /** The coordinator handed `client` a route: its hops and the client may report on each other. */
  routed(network: string, client: string, modelId: string, hops: readonly Hop[]): void {
    this.pairs.routed(network, client, modelId, hops, this.now());
  }

  /**
   * Why a client's route is refused (credits-required and a balance below one token through the
   * layers asked, or a pipeline call), or undefined. A new key gets the network's grant first.
   */
  refusesRoute(network: string, client: string, spec: ModelSpec, range: { start?: number; end?: number }): string | undefined {
    const rules = this.rules(network);
    if (rules.mode === 'free') return undefined;
    this.grantNewKey(network, client, rules);
    if (rules.mode !== 'credits-required') return undefined;
    const layers = Math.max(0, Math.min(range.end ?? spec.numLayers, spec.numLayers) - (range.start ?? 0));
    const cost = spec.pipeline ? rules.pricePerCall : layers * rules.pricePerToken;
    const balance = this.balance(network, client);
    const owed = this.unconfirmed(network, client, rules);
    if (balance - owed >= cost) return undefined;
    const unconfirmed = owed ? `, less ${owed} for work its peers reported and it has not confirmed` : '';
    return `${client} holds ${balance} credits on network ${network}${unconfirmed}, which requires credits: one ${spec.pipeline ? 'call' : 'token'} through ${spec.modelId} costs ${cost}`;
  }

  /** A serving peer's accepted status (for layers [start, end) of a model): its usage per client. */
  served(network: string, peer: string, status: { modelId: string; start: number; end: number; usage?: ServedUsage[] }, reply: Reply): void {
    if (!status.usage?.length) return;
    const refused: string[] = [];
    for (const u of status.usage) {
      if (u.start < status.start || u.end > status.end) {
        refused.push(`${peer} holds layers [${status.start}, ${status.end}) of ${status.modelId}, not [${u.start}, ${u.end})`);
        continue;
      }
      const why = this.take(network, this.pairs.get(network, u.client, peer, status.modelId, u.start, u.end), 'fromPeer', u);
      if (why) refused.push(`${u.client} through ${peer}: ${why}`);
    }
    if (refused.length) reply(usageError('status', refused));
  }

  /** A client's `usage`: what it received through each peer. */
  received(network: string, client: string, msg: Msg<'usage'>, reply: Reply): void {
    const refused: string[] = [];
    for (const u of msg.peers) {
      const why = this.take(network, this.pairs.get(network, client, u.peerId, msg.modelId, u.start, u.end), 'fromClient', u);
      if (why) refused.push(`${u.peerId}: ${why}`);
    }
    if (refused.length) reply(usageError('usage', refused));
  }

  /** Answers `credits` (balances) and `grant` (the owner mints to a key). */
  handle(network: string, asker: string, msg: Msg<'credits'> | Msg<'grant'>, reply: Reply): void {
    const owner = this.o.governance.isOwner(network, asker);
    try {
      let balances: [string, number][];
      if (msg.type === 'grant') {
        if (!owner) throw denied(network, 'grants credits');
        this.ledger(network).grant(msg.key, msg.amount, asker);
        this.credited('grant', msg.amount);
        this.o.log(`${network}: owner ${asker} granted ${msg.amount} credits to ${msg.key}`);
        balances = [[msg.key, this.balance(network, msg.key)]];
      } else if (msg.top !== undefined) {
        if (!owner) throw denied(network, 'lists the largest balances');
        balances = this.ledgers.get(network)?.top(msg.top) ?? [];
      } else {
        const key = msg.key ?? asker;
        if (key !== asker && !owner) throw denied(network, "reads another key's balance");
        balances = [[key, this.balance(network, key)]];
      }
      reply({ type: 'credits', requestId: msg.requestId, network, rules: this.rules(network), balances: balances.map(([key, balance]) => ({ key, balance })) });
    } catch (err) {
      if (!(err instanceof AigridError)) throw err;
      reply({ type: 'error', code: err.code, message: err.message, ref: msg.type, requestId: msg.requestId });
    }
  }

  /** The network's last member left: its pairs go; its ledger stays (balances outlive membership). */
  forget(network: string): void {
    this.pairs.forget(network);
    this.newKeyGrants.delete(network);
  }

  /** Adds one side's report to a pair and settles what both sides now agree on; why not, when refused. */
  private take(network: string, pair: UsagePair | undefined, side: 'fromClient' | 'fromPeer', u: ServedUsage | ReceivedUsage): string | undefined {
    if (!pair) return `the coordinator routed no such client, peer, model and layers [${u.start}, ${u.end}) together lately`;
    const now = this.now();
    const s = pair[side];
    const seconds = Math.max(0, now - s.at) / 1000;
    s.room.tokens = Math.min(s.room.tokens + MAX_PAIR_TOKENS_PER_SECOND * seconds, MAX_PAIR_TOKENS_PER_SECOND * MAX_ROOM_SECONDS);
    s.room.calls = Math.min(s.room.calls + MAX_PAIR_CALLS_PER_SECOND * seconds, MAX_PAIR_CALLS_PER_SECOND * MAX_ROOM_SECONDS);
    s.at = now;
    const calls = u.calls ?? 0;
    if (u.tokens > s.room.tokens || calls > s.room.calls) {
      return `${u.tokens} tokens and ${calls} calls are more than the time since the pair was routed allows (${Math.floor(s.room.tokens)} tokens, ${Math.floor(s.room.calls)} calls now)`;
    }
    s.room.tokens -= u.tokens;
    s.room.calls -= calls;
    s.tokens = Math.min(s.tokens + u.tokens, Number.MAX_SAFE_INTEGER);
    s.calls = Math.min(s.calls + calls, Number.MAX_SAFE_INTEGER);
    this.settle(network, pair);
    return undefined;
  }

  private settle(network: string, pair: UsagePair): void {
    const tokens = Math.min(pair.fromClient.tokens, pair.fromPeer.tokens);
    const calls = Math.min(pair.fromClient.calls, pair.fromPeer.calls);
    if (tokens === 0 && calls === 0) return;
    const rules = this.rules(network);
    const amount = tokens * (pair.end - pair.start) * rules.pricePerToken + calls * rules.pricePerCall;
    if (amount > 0) {
      try {
        const ledger = this.ledger(network);
        if (rules.mode === 'free') ledger.mint(pair.peer, amount, pair.client, pair.modelId);
        else ledger.transfer(pair.client, pair.peer, amount, pair.modelId);
      } catch (err) {
        // Left pending: a later report settles it once there is room.
        this.throttledLog(`${network}: ${amount} credits for ${pair.client} through ${pair.peer} not settled: ${errorMessage(err)}`);
        return;
      }
      if (rules.mode === 'free') this.credited('mint', amount);
      else {
        this.credited('spend', amount);
        this.credited('earn', amount);
      }
    }
    for (const s of [pair.fromClient, pair.fromPeer]) {
      s.tokens -= tokens;
      s.calls -= calls;
    }
  }

  /** Credits of the work peers reported lately for the client that it has not confirmed (yet). */
  private unconfirmed(network: string, client: string, rules: CreditRules): number {
    const since = this.now() - UNCONFIRMED_MS;
    let owed = 0;
    for (const pair of this.pairs.ofClient(network, client)) {
      if (pair.fromPeer.at < since) continue;
      const tokens = Math.max(0, pair.fromPeer.tokens - pair.fromClient.tokens);
      const calls = Math.max(0, pair.fromPeer.calls - pair.fromClient.calls);
      owed += tokens * (pair.end - pair.start) * rules.pricePerToken + calls * rules.pricePerCall;
    }
    return owed;
  }

  /** Mints the network's grant to a key at its first route, at most MAX_NEW_KEY_GRANTS_PER_HOUR per network. */
  private grantNewKey(network: string, key: string, rules: CreditRules): void {
    if (rules.grant === 0 || this.ledgers.get(network)?.granted(key)) return;
    let allowance = this.newKeyGrants.get(network);
    if (!allowance) this.newKeyGrants.set(network, (allowance = new TokenBucket(MAX_NEW_KEY_GRANTS_PER_HOUR / 3600, MAX_NEW_KEY_GRANTS_PER_HOUR)));
    if (!allowance.take()) return this.throttledLog(`${network}: ${key} gets no new-key grant now (${MAX_NEW_KEY_GRANTS_PER_HOUR} an hour at most)`);
    try {
      this.ledger(network).grant(key, rules.grant, undefined, true);
      this.credited('grant', rules.grant);
    } catch (err) {
      this.throttledLog(`${network}: no new-key grant for ${key}: ${errorMessage(err)}`);
    }
  }

  /** The network's ledger, made when it first records something. */
  private ledger(network: string): Ledger {
    let ledger = this.ledgers.get(network);
    if (ledger) return ledger;
    if (this.ledgers.size >= (this.o.maxLedgers ?? MAX_LEDGERS)) throw new AigridError('ERR_REGISTRY_FULL', `the server keeps the ledgers of ${this.ledgers.size} networks, the most it takes`);
    this.ledgers.set(network, (ledger = new Ledger(this.room, undefined, this.now)));
    return ledger;
  }

  private credited(kind: EntryKind, amount: number): void {
    this.o.metrics?.credited(kind, amount);
    this.o.onChange?.();
  }

  private throttledLog(line: string): void {
    const now = this.now();
    if (now - this.lastLog < 10_000) return;
    this.lastLog = now;
    this.o.log(line);
  }
}

function denied(network: string, what: string): AigridError {
  return new AigridError('ERR_PERMISSION_DENIED', `only the owner of network ${network} ${what}`);
}

function usageError(ref: 'status' | 'usage', refused: string[]): ServerMessage {
  const more = refused.length > 1 ? ` (and ${refused.length - 1} more)` : '';
  return { type: 'error', code: 'ERR_BAD_USAGE', message: `usage not taken: ${refused[0]!.slice(0, 600)}${more}`, ref };
}
