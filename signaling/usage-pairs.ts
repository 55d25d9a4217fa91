// The work a client and a serving peer each say the peer did for the client, until the two agree
// (credits.ts settles the smaller count). A pair is one (client, peer, model, layer range) that the
// coordinator routed together: only routes make pairs, so a report naming anything else is not
// taken. Per network the pairs are a bounded LRU (a route touches its pairs), and one client holds
// a bounded share of them, so a client asking many routes cannot push the others' pairs out.

/**
 * What one side reported and nothing settled yet; when it last reported (or the pair was made);
 * and how much more it may report now (credits.ts refills it with time, so many small reports
 * cannot claim more than a few large ones).
 */
export interface UsageSide {
  tokens: number;
  calls: number;
  at: number;
  room: { tokens: number; calls: number };
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

  /** `room`: what a side may report at first (about a second's worth). */
  constructor(
    private readonly room: { tokens: number; calls: number },
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
      const side = (): UsageSide => ({ tokens: 0, calls: 0, at: now, room: { ...this.room } });
      const pair = held.pairs.get(key) ?? { client, peer: peerId, modelId, start, end, fromClient: side(), fromPeer: side() };
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

  /** The client's pairs in a network (at most MAX_PAIRS_PER_CLIENT). */
  ofClient(network: string, client: string): UsagePair[] {
    const held = this.networks.get(network);
    return [...(held?.byClient.get(client) ?? [])].map((key) => held!.pairs.get(key)!);
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
