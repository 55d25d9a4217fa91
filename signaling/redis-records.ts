// The registries of every network (blocks, vDAGs, policies) shared by the signaling processes on
// one Redis: each network's records are one JSON value of a hash; a process that changed them
// writes the networks whose value changed (or deletes those that are gone) and tells the others
// which, and they read it back. Registry changes are rare and small next to the traffic a process
// relays, so the whole network's records travel each time. Two processes changing one network's
// records at the same moment: the last write wins (the other change is lost, not merged).
import type { Redis } from 'ioredis';
import type { Block, PolicyRecord, Vdag } from '../protocol/index.ts';

export interface NetworkRecords {
  blocks: Block[];
  vdags: Vdag[];
  policies: PolicyRecord[];
}

export class SharedRecords {
  /** Each network's records (JSON) as Redis last had them to this process's knowledge. */
  private readonly seen = new Map<string, string>();
  private sync: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly tell: (network: string) => Promise<void>,
    private readonly log: (line: string) => void,
    restored: Record<string, NetworkRecords>,
  ) {
    for (const [network, records] of Object.entries(restored)) this.seen.set(network, JSON.stringify(records));
  }

  /** Every network's records in Redis (when a process starts). */
  static async read(redis: Redis, key: string): Promise<Record<string, NetworkRecords>> {
    return Object.fromEntries(Object.entries(await redis.hgetall(key)).map(([network, text]) => [network, JSON.parse(text) as NetworkRecords]));
  }

  /** The records here changed: the networks whose records differ are written and told. */
  changed(all: () => Record<string, NetworkRecords>): void {
    this.sync ??= Promise.resolve()
      .then(async () => {
        this.sync = undefined;
        const now = all();
        for (const [network, records] of Object.entries(now)) {
          const text = JSON.stringify(records);
          if (this.seen.get(network) === text) continue;
          this.seen.set(network, text);
          await this.redis.hset(this.key, network, text);
          await this.tell(network);
        }
        for (const network of [...this.seen.keys()]) {
          if (network in now) continue;
          this.seen.delete(network);
          await this.redis.hdel(this.key, network);
          await this.tell(network);
        }
      })
      .catch((err: unknown) => this.log(`redis: writing registries: ${String(err)}`));
  }

  /** Another process changed a network's records: what Redis holds now (null: none). */
  async fetch(network: string): Promise<NetworkRecords | null> {
    const text = await this.redis.hget(this.key, network);
    if (text === null) this.seen.delete(network);
    else this.seen.set(network, text);
    return text === null ? null : (JSON.parse(text) as NetworkRecords);
  }
}
