// The work a client and a serving peer each say the peer did for the client, until the two agree
// (credits.ts settles the smaller count). A pair is one (client, peer, model, layer range) that the
// coordinator routed together: only routes make pairs, so a report naming anything else is not
// taken. Per network the pairs are a bounded LRU (a route touches its pairs), and one client holds
// a bounded share of them, so a client asking many routes cannot push the others' pairs out.

/** What one side reported and nothing settled yet, and when it last reported (or the pair was made). */
export interface UsageSide {
  tokens: number;
  calls: number;
  at: number;
}

export interface UsagePair {
  client: string;
  peer: string;
  modelId: string;
  start: number;
  end: number;
  fromClient: UsageSide;
  fromPeer: UsageSide;
}

export const MAX_PAIRS_PER_NETWORK = 4096;
export const MAX_PAIRS_PER_CLIENT = 256;

interface NetworkPairs {
  /** Least recently routed first. */
  pairs: Map<string, UsagePair>;
  /** client -> its pairs' keys, least recently routed first. */
  byClient: Map<string, Set<string>>;
}

const keyOf = (client: string, peer: string, modelId: string, start: number, end: number) => `${client} ${peer} ${modelId} ${start} ${end}`;

export class UsagePairs {
  private readonly networks = new Map<string, NetworkPairs>();

  constructor(
    private readonly maxPerNetwork = MAX_PAIRS_PER_NETWORK,
    private readonly maxPerClient = MAX_PAIRS_PER_CLIENT,
  ) {}

  /** The coordinator routed `client` through these hops of `modelId`: each (but the client itself) may report on the other. */
  routed(network: string, client: string, modelId: string, hops: readonly { peerId: string; start: number; end: number }[], now: number): void {
    let held = this.networks.get(network);
    if (!held) this.networks.set(network, (held = { pairs: new Map(), byClient: new Map() }));
    let mine = held.byClient.get(client);
    if (!mine) held.byClient.set(client, (mine = new Set()));
    for (const { peerId, start, end } of hops) {
      if (peerId === client) continue; // serving oneself earns nothing
      const key = keyOf(client, peerId, modelId, start, end);
      const pair = held.pairs.get(key) ?? { client, peer: peerId, modelId, start, end, fromClient: { tokens: 0, calls: 0, at: now }, fromPeer: { tokens: 0, calls: 0, at: now } };
      held.pairs.delete(key);
      held.pairs.set(key, pair);
      mine.delete(key);
      mine.add(key);
      if (mine.size > this.maxPerClient) this.drop(held, mine.values().next().value!);
      if (held.pairs.size > this.maxPerNetwork) this.drop(held, held.pairs.keys().next().value!);
    }
  }

  get(network: string, client: string, peer: string, modelId: string, start: number, end: number): UsagePair | undefined {
    return this.networks.get(network)?.pairs.get(keyOf(client, peer, modelId, start, end));
  }

  /** Pairs held for a network (for tests and bounds). */
  size(network: string): number {
    return this.networks.get(network)?.pairs.size ?? 0;
  }

  /** The network's last member left. */
  forget(network: string): void {
    this.networks.delete(network);
  }

  private drop(held: NetworkPairs, key: string): void {
    const pair = held.pairs.get(key);
    if (!pair) return;
    held.pairs.delete(key);
    const mine = held.byClient.get(pair.client);
    mine?.delete(key);
    if (mine?.size === 0) held.byClient.delete(pair.client);
  }
}
