// The registry in Redis, shared by every signaling process of a deployment (`aigrid signal
// --redis URL`): a hash per network (peerId -> PeerInfo as JSON), a sorted set keeping the join
// order, the set of networks that have members, and a running total. Each change is one Lua
// script, so concurrent processes never see a half-applied join or leave.
import type { Redis } from 'ioredis';
import type { PeerInfo } from '../protocol/index.ts';
import type { RegistryStore } from './registry.ts';

/** Keys of one deployment: every key starts with the prefix (default `aigrid:`). */
export class RedisKeys {
  constructor(readonly prefix = 'aigrid:') {}
  peers(network: string): string {
    return `${this.prefix}peers:${network}`;
  }
  order(network: string): string {
    return `${this.prefix}order:${network}`;
  }
  get networks(): string {
    return `${this.prefix}networks`;
  }
  get total(): string {
    return `${this.prefix}total`;
  }
  get seq(): string {
    return `${this.prefix}seq`;
  }
  /** Which process holds the peer's socket (its process id), with an expiry the holder refreshes. */
  location(network: string, peerId: string): string {
    return `${this.prefix}at:${network}:${peerId}`;
  }
  serving(network: string): string {
    return `${this.prefix}serving:${network}`;
  }
  get rules(): string {
    return `${this.prefix}rules`;
  }
  get reputation(): string {
    return `${this.prefix}reputation`;
  }
  /** Each network's registries (blocks, vDAGs, policies) as one JSON value (redis-records.ts). */
  get records(): string {
    return `${this.prefix}records`;
  }
  get serverKey(): string {
    return `${this.prefix}server-key`;
  }
  /** The lease of a network's coordinator: the holding process id, with an expiry it renews. */
  lease(network: string): string {
    return `${this.prefix}lease:${network}`;
  }
  /** The pub/sub channel of one process, and the one every process listens to. */
  channel(processId: string): string {
    return `${this.prefix}proc:${processId}`;
  }
  get everyone(): string {
    return `${this.prefix}all`;
  }
}

const ADD = `
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if new == 1 then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
  redis.call('INCR', KEYS[5])
  redis.call('SADD', KEYS[3], ARGV[3])
end
return new`;

// ARGV[3]: '' removes unconditionally; otherwise only when the peer's location key (KEYS[6]) is
// absent or names ARGV[3] ('-': only when absent), and the location key goes with it.
const REMOVE = `
if ARGV[3] ~= '' then
  local at = redis.call('GET', KEYS[6])
  if at and at ~= ARGV[3] then return 0 end
  if at then redis.call('DEL', KEYS[6]) end
end
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
if gone == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('DECR', KEYS[5])
  if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('SREM', KEYS[3], ARGV[2])
    redis.call('DEL', KEYS[2])
  end
end
return gone`;

export class RedisRegistry implements RegistryStore {
  constructor(
    private readonly redis: Redis,
    readonly keys: RedisKeys = new RedisKeys(),
  ) {}

  async add(network: string, peer: PeerInfo): Promise<void> {
    const k = this.keys;
    await this.redis.eval(ADD, 5, k.peers(network), k.order(network), k.networks, k.seq, k.total, peer.peerId, JSON.stringify(peer), network);
  }

  async remove(network: string, peerId: string): Promise<boolean> {
    return this.removeWhere(network, peerId, '');
  }

  /**
   * Removes the peer only while its socket is held by `holder` or by nobody (`'-'`: only by
   * nobody, its holder's expiry passed); a peer that moved to another process stays.
   */
  async removeWhere(network: string, peerId: string, holder: string): Promise<boolean> {
    const k = this.keys;
    const gone = await this.redis.eval(REMOVE, 6, k.peers(network), k.order(network), k.networks, k.seq, k.total, k.location(network, peerId), peerId, network, holder);
    return gone === 1;
  }

  async get(network: string, peerId: string): Promise<PeerInfo | undefined> {
    const text = await this.redis.hget(this.keys.peers(network), peerId);
    return text === null ? undefined : (JSON.parse(text) as PeerInfo);
  }

  async list(network: string): Promise<PeerInfo[]> {
    const [[, order], [, all]] = (await this.redis.multi().zrange(this.keys.order(network), 0, -1).hgetall(this.keys.peers(network)).exec()) as [[unknown, string[]], [unknown, Record<string, string>]];
    const out: PeerInfo[] = [];
    for (const peerId of order) {
      const text = all[peerId];
      if (text !== undefined) out.push(JSON.parse(text) as PeerInfo);
    }
    return out;
  }

  /** The network's peer ids alone (no PeerInfo parsed), in no particular order. */
  async ids(network: string): Promise<string[]> {
    return this.redis.hkeys(this.keys.peers(network));
  }

  async networks(): Promise<string[]> {
    return this.redis.smembers(this.keys.networks);
  }

  async count(network?: string): Promise<number> {
    if (network !== undefined) return this.redis.hlen(this.keys.peers(network));
    return Number((await this.redis.get(this.keys.total)) ?? 0);
  }
}
