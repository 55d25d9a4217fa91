// Several signaling processes serving the same networks over one Redis (`aigrid signal --redis
// URL`). What one process kept in memory or in its data folder is shared in Redis: the registry
// (redis-registry.ts), the served models with their placements and readiness
// (redis-serving-store.ts), the networks' rules, the keys' reputation and the ticket key.
//
// Sockets stay in the process that accepted them. Each process records which peers it holds
// (`at:<network>:<peer>` -> its id, with an expiry it refreshes) and listens on its own pub/sub
// channel; a signal, decline, coordinator reply, assign or unassign for a peer held elsewhere is
// published to the holder, which delivers it. Updates, leaves, joins and `models` broadcasts go
// to every process, each telling its own members.
//
// One process coordinates each network at a time: it holds the network's lease (SET NX PX,
// renewed, released on close). The others forward serve, status, route, withdraw, verdicts and
// membership changes to it, and it answers through the asker's process. When the holder dies
// (its channel has no listener, or its lease expired) another process takes the lease over and
// starts from the serving store in Redis, keeping the stored placements for the recovery time as
// a restarted server does. Stale peers of a dead process (their location expired and they did
// not come back elsewhere) are removed by the network's coordinator and announced as timed out.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis } from 'ioredis';
import { fromBase64Url, identityFromSeed, toBase64Url, type ClientMessage, type Identity, type ModelSpec, type PeerInfo, type ServerMessage } from '../protocol/index.ts';
import type { Coordinator } from './coordinator.ts';
import type { Governance, NetworkRules } from './governance.ts';
import { SharedRecords, type NetworkRecords } from './redis-records.ts';
import type { KeyRecord, Reputation, Verdict } from './reputation.ts';
import { RedisKeys, RedisRegistry } from './redis-registry.ts';
import { RedisServingStore } from './redis-serving-store.ts';

/** What a Hub lets the cluster do with the sockets of this process. */
export interface ClusterHost {
  /** This process's coordinator: it runs the networks whose lease this process holds. */
  coordinator: Coordinator;
  governance: Governance;
  reputation: Reputation;
  /** Sends to a peer whose socket is here; false when it is not. */
  deliver(network: string, peerId: string, message: ServerMessage): boolean;
  /** Tells the members here that were told of `peerId` (its update or leave). */
  tell(network: string, peerId: string, message: ServerMessage): void;
  /** Announces a join to the members of the network here. */
  announce(network: string, peer: PeerInfo): void;
  /** Sends to every member of the network here. */
  broadcast(network: string, message: ServerMessage): void;
  /** Another process took this peer's id over: the socket here is replaced. */
  replace(network: string, peerId: string): void;
  /** Another process changed a network's blocks, vDAGs or policies (null: it has none now). */
  loadRecords(network: string, records: NetworkRecords | null): void;
  /** The network's last member anywhere left: its registries go with its rules. */
  forgetRecords(network: string): void;
  /** Every [network, peerId] whose socket is here. */
  local(): Iterable<[string, string]>;
}

/** The coordinator's operations as the Hub calls them, run wherever the network's lease is. */
export type CoordinatorApi = Pick<Coordinator, 'serve' | 'status' | 'route' | 'withdraw' | 'joined' | 'changed' | 'coverage' | 'serving' | 'recovers' | 'close'>;

type Reply = (message: ServerMessage) => void;
type StatusMsg = Extract<ClientMessage, { type: 'status' }>;
type RouteMsg = Extract<ClientMessage, { type: 'route' }>;

type Op =
  | { op: 'serve'; spec: ModelSpec }
  | { op: 'status'; msg: StatusMsg }
  | { op: 'route'; msg: RouteMsg }
  | { op: 'withdraw'; modelId: string }
  | { op: 'joined' }
  | { op: 'changed' }
  | { op: 'verdict'; verdicts: Verdict[] };

type Body =
  | { k: 'deliver'; network: string; peerId: string; message: ServerMessage }
  | { k: 'tell'; network: string; peerId: string; message: ServerMessage }
  | { k: 'join'; network: string; peer: PeerInfo }
  | { k: 'broadcast'; network: string; message: ServerMessage }
  | { k: 'replace'; network: string; peerId: string }
  | { k: 'coord'; network: string; peerId: string; op: Op; hops?: number }
  | { k: 'rules'; network: string; rules: NetworkRules | null }
  | { k: 'records'; network: string }
  | { k: 'reputation'; records: Record<string, KeyRecord> };
/** What goes over pub/sub: a body and the sending process's id. */
type Envelope = Body & { src: string };

export interface RedisClusterOptions {
  /** redis://[user:password@]host:port[/db] */
  url: string;
  /** Every key and channel starts with it (default `aigrid:`): deployments may share a Redis. */
  prefix?: string;
  /**
   * How long a lease or a peer's location outlives its process's last renewal (default 5 s): a
   * dead process's networks are taken over, and its peers that did not come back are dropped,
   * within about this long. Renewed five times per period.
   */
  leaseMs?: number;
  log?: (line: string) => void;
}

const DEFAULT_LEASE_MS = 5_000;
/** Locations read per MGET when looking for peers of dead processes. */
const SWEEP_SLICE = 500;
/** Reputation changes are added to Redis at most this often. */
const REPUTATION_EVERY_MS = 1_000;

// Renews the location keys this process still holds; returns how many it renewed.
const RENEW_MINE = `
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]); n = n + 1 end
end
return n`;
const RENEW_IF = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const DELETE_IF = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export class RedisCluster {
  /** This process's id: its channel and the value of the locations and leases it holds. */
  readonly id = `${hostname().slice(0, 40)}-${process.pid}-${randomBytes(4).toString('hex')}`;
  readonly keys: RedisKeys;
  readonly registry: RedisRegistry;
  readonly serving: RedisServingStore;
  private host: ClusterHost | undefined;
  /** Networks whose lease this process holds. */
  private readonly leading = new Set<string>();
  private readonly leaseMs: number;
  private readonly log: (line: string) => void;
  private timer: ReturnType<typeof setInterval> | undefined;
  private sweptAt = 0;
  private ticking = false;
  private closed = false;
  /** The rules last written to or read from Redis, per network (JSON), so only changes are written. */
  private readonly rulesSeen = new Map<string, string>();
  private rulesSync: Promise<void> | undefined;
  private readonly records: SharedRecords;
  /** Each key's record as Redis last had it; the local records' difference is added at the next flush. */
  private readonly reputationSeen = new Map<string, KeyRecord>();
  private reputationTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(
    private readonly redis: Redis,
    private readonly sub: Redis,
    options: RedisClusterOptions,
    /** The key that signs route tickets: one for every process, so any of them answers for the others' tickets. */
    readonly serverKey: Identity,
    /** The rules and reputations in Redis when this process started. */
    readonly restoredRules: Record<string, NetworkRules>,
    readonly restoredReputation: Record<string, KeyRecord>,
    /** The networks' blocks, vDAGs and policies in Redis when this process started. */
    readonly restoredRecords: Record<string, NetworkRecords>,
  ) {
    this.keys = new RedisKeys(options.prefix);
    this.registry = new RedisRegistry(redis, this.keys);
    this.serving = new RedisServingStore(redis, this.keys);
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.log = options.log ?? (() => {});
    this.records = new SharedRecords(redis, this.keys.records, (network) => this.publishAll({ k: 'records', network }), this.log, restoredRecords);
    for (const [network, rules] of Object.entries(restoredRules)) this.rulesSeen.set(network, JSON.stringify(rules));
    for (const [peerId, record] of Object.entries(restoredReputation)) this.reputationSeen.set(peerId, record);
  }

  /** Connects (twice: commands, and the subscription) and reads the shared state. */
  static async open(options: RedisClusterOptions): Promise<RedisCluster> {
    const log = options.log ?? (() => {});
    const connect = () => {
      const client = new Redis(options.url, { lazyConnect: true, maxRetriesPerRequest: 3 });
      client.on('error', (err: Error) => log(`redis ${options.url.replace(/\/\/[^@]*@/, '//')}: ${err.message}`));
      return client;
    };
    const redis = connect();
    const sub = connect();
    try {
      await Promise.all([redis.connect(), sub.connect()]);
      const keys = new RedisKeys(options.prefix);
      await redis.set(keys.serverKey, toBase64Url(crypto.getRandomValues(new Uint8Array(32))), 'NX');
      const seed = (await redis.get(keys.serverKey))!;
      const rules = Object.fromEntries(Object.entries(await redis.hgetall(keys.rules)).map(([network, text]) => [network, JSON.parse(text) as NetworkRules]));
      const reputation: Record<string, KeyRecord> = {};
      for (const [field, value] of Object.entries(await redis.hgetall(keys.reputation))) {
        const cut = field.lastIndexOf(':');
        const record = (reputation[field.slice(0, cut)] ??= { verified: 0, wrong: 0, timeouts: 0 });
        const which = field.slice(cut + 1);
        if (which === 'v') record.verified = Number(value);
        else if (which === 'w') record.wrong = Number(value);
        else if (which === 't') record.timeouts = Number(value);
      }
      const records = await SharedRecords.read(redis, keys.records);
      const cluster = new RedisCluster(redis, sub, options, identityFromSeed(fromBase64Url(seed)), rules, reputation, records);
      sub.on('message', (_channel: string, text: string) => cluster.onEnvelope(text));
      await sub.subscribe(keys.channel(cluster.id), keys.everyone);
      return cluster;
    } catch (err) {
      redis.disconnect();
      sub.disconnect();
      throw err;
    }
  }

  /** Binds the Hub's sockets; returns the coordinator the Hub calls (it runs where the lease is). */
  attach(host: ClusterHost): CoordinatorApi {
    this.host = host;
    this.timer = setInterval(() => void this.tick(), Math.max(50, Math.floor(this.leaseMs / 5)));
    this.timer.unref();
    const local = host.coordinator;
    return {
      serve: (network, peerId, spec, reply) => this.run(network, peerId, { op: 'serve', spec }, reply),
      status: (network, peerId, msg, reply) => this.run(network, peerId, { op: 'status', msg }, reply),
      route: (network, peerId, msg, reply) => this.run(network, peerId, { op: 'route', msg }, reply),
      withdraw: (network, peerId, modelId, reply) => this.run(network, peerId, { op: 'withdraw', modelId }, reply),
      joined: (network, peerId) => this.run(network, peerId, { op: 'joined' }),
      changed: (network) => this.run(network, '', { op: 'changed' }),
      // Read from the shared serving store: any process answers these.
      coverage: (network) => local.coverage(network),
      serving: (network) => local.serving(network),
      recovers: (network) => local.recovers(network),
      close: () => local.close(),
    };
  }

  /** A client's verdicts count where its routes were handed out: at the network's coordinator. */
  verdict(network: string, client: string, verdicts: Verdict[]): Promise<void> {
    return this.run(network, client, { op: 'verdict', verdicts });
  }

  /**
   * A peer said hello here: it is recorded as held by this process, and a socket of the same id
   * on another process is told it was replaced. The network's rules are read from Redis first, so
   * the network's owner is the same on every process.
   */
  async claim(network: string, peerId: string): Promise<void> {
    const key = this.keys.location(network, peerId);
    const before = await this.redis.set(key, this.id, 'PX', this.leaseMs, 'GET');
    if (before !== null && before !== this.id) await this.publish(before, { k: 'replace', network, peerId });
    const text = await this.redis.hget(this.keys.rules, network);
    if (text !== null && this.rulesSeen.get(network) !== text) {
      this.rulesSeen.set(network, text);
      this.host?.governance.load(network, JSON.parse(text) as NetworkRules);
    }
  }

  /** A peer joined here: the members on other processes hear of it (complete directories only). */
  async joined(network: string, peer: PeerInfo): Promise<void> {
    await this.publishAll({ k: 'join', network, peer });
  }

  /** A member here updated its capabilities: the other processes tell those told of it. */
  async updated(network: string, peer: PeerInfo): Promise<void> {
    await this.publishAll({ k: 'tell', network, peerId: peer.peerId, message: { type: 'update', peer } });
  }

  /**
   * A peer's socket here closed. Removed from the registry (and its leave told everywhere) only
   * while this process still holds it: a peer that moved to another process stays. While this
   * process stops, its peers are left for the sweep, which drops those that do not come back.
   * Whether it was removed.
   */
  async left(network: string, peerId: string, leave: ServerMessage, stopping: boolean): Promise<boolean> {
    if (stopping) return false;
    if (!(await this.registry.removeWhere(network, peerId, this.id))) return false;
    await this.publishAll({ k: 'tell', network, peerId, message: leave });
    if ((await this.registry.count(network)) === 0) {
      this.host?.governance.forget(network);
      this.host?.forgetRecords(network);
    }
    return true;
  }

  /** Sends to a peer of the network wherever its socket is; false when no process holds it. */
  async send(network: string, peerId: string, message: ServerMessage): Promise<boolean> {
    if (this.host?.deliver(network, peerId, message)) return true;
    const at = await this.redis.get(this.keys.location(network, peerId));
    if (at === null || at === this.id) return false;
    return this.publish(at, { k: 'deliver', network, peerId, message });
  }

  /** A broadcast the coordinator made: the members on the other processes hear it too. */
  broadcast(network: string, message: ServerMessage): void {
    void this.publishAll({ k: 'broadcast', network, message }).catch((err: unknown) => this.log(`redis: broadcast to ${network}: ${String(err)}`));
  }

  /** Blocks, vDAGs or policies changed here (or were forgotten): written to Redis and told to the others. */
  recordsChanged(all: () => Record<string, NetworkRecords>): void {
    this.records.changed(all);
  }

  /** The network's rules changed here (or were forgotten): written to Redis and told to the others. */
  rulesChanged(): void {
    this.rulesSync ??= Promise.resolve().then(async () => {
      this.rulesSync = undefined;
      const all = this.host?.governance.all() ?? {};
      for (const [network, rules] of Object.entries(all)) {
        const text = JSON.stringify(rules);
        if (this.rulesSeen.get(network) === text) continue;
        this.rulesSeen.set(network, text);
        await this.redis.hset(this.keys.rules, network, text);
        await this.publishAll({ k: 'rules', network, rules });
      }
      for (const network of [...this.rulesSeen.keys()]) {
        if (all[network]) continue;
        this.rulesSeen.delete(network);
        await this.redis.hdel(this.keys.rules, network);
        await this.publishAll({ k: 'rules', network, rules: null });
      }
    }).catch((err: unknown) => this.log(`redis: writing rules: ${String(err)}`));
  }

  /** Reputation changed here: the differences are added to Redis within REPUTATION_EVERY_MS. */
  reputationChanged(): void {
    if (this.reputationTimer || this.closed) return;
    this.reputationTimer = setTimeout(() => {
      this.reputationTimer = undefined;
      void this.flushReputation().catch((err: unknown) => this.log(`redis: writing reputation: ${String(err)}`));
    }, REPUTATION_EVERY_MS);
    this.reputationTimer.unref();
  }

  /** Releases this process's leases and locations' claims, and disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.reputationTimer);
    try {
      await this.flushReputation();
      for (const network of this.leading) await this.redis.eval(DELETE_IF, 1, this.keys.lease(network), this.id);
      this.leading.clear();
      await this.sub.quit();
      await this.redis.quit();
    } catch (err) {
      this.log(`redis: closing: ${String(err)}`);
      this.sub.disconnect();
      this.redis.disconnect();
    }
  }

  /** Runs a coordinator operation where the network's lease is, taking the lease when nobody holds it. */
  private async run(network: string, peerId: string, op: Op, reply?: Reply, hops = 0): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const leader = await this.leader(network);
      if (leader === this.id) return this.execute(network, peerId, op, reply ?? (() => {}));
      // A forwarded operation answers the peer through the process that holds its socket.
      if (await this.publish(leader, { k: 'coord', network, peerId, op, hops })) return;
      // Nobody listens on the holder's channel: it died. Its lease goes, and the next try takes it.
      this.log(`${network}: coordinator ${leader} is gone; taking its lease over`);
      await this.redis.eval(DELETE_IF, 1, this.keys.lease(network), leader);
    }
    this.log(`${network}: no coordinator took ${op.op} from ${peerId}`);
  }

  private execute(network: string, peerId: string, op: Op, reply: Reply): Promise<void> {
    const c = this.host!.coordinator;
    switch (op.op) {
      case 'serve':
        return c.serve(network, peerId, op.spec, reply);
      case 'status':
        return c.status(network, peerId, op.msg, reply);
      case 'route':
        return c.route(network, peerId, op.msg, reply);
      case 'withdraw':
        return c.withdraw(network, peerId, op.modelId, reply);
      case 'joined':
        return c.joined(network, peerId);
      case 'changed':
        return c.changed(network);
      case 'verdict':
        this.host!.reputation.record(peerId, op.verdicts);
        return Promise.resolve();
    }
  }

  /** The process holding the network's lease; this one when the lease was free. */
  private async leader(network: string): Promise<string> {
    const key = this.keys.lease(network);
    for (;;) {
      const holder = await this.redis.get(key);
      if (holder !== null) {
        if (holder === this.id && !this.leading.has(network)) await this.lead(network);
        return holder;
      }
      if ((await this.redis.set(key, this.id, 'PX', this.leaseMs, 'NX')) === 'OK') {
        await this.lead(network);
        return this.id;
      }
    }
  }

  /** This process took the network's lease: stored placements stand while their peers come back. */
  private async lead(network: string): Promise<void> {
    this.leading.add(network);
    const models = await this.serving.get(network);
    this.log(`${network}: coordinating here${models.length ? ` (${models.length} models from Redis)` : ''}`);
    if (models.some((m) => m.placement)) this.host?.coordinator.recover(network);
  }

  private onEnvelope(text: string): void {
    let e: Envelope;
    try {
      e = JSON.parse(text) as Envelope;
    } catch {
      return;
    }
    if (e.src === this.id && e.k !== 'coord' && e.k !== 'deliver') return;
    const host = this.host;
    if (!host) return;
    try {
      switch (e.k) {
        case 'deliver':
          host.deliver(e.network, e.peerId, e.message);
          return;
        case 'tell':
          host.tell(e.network, e.peerId, e.message);
          return;
        case 'join':
          host.announce(e.network, e.peer);
          return;
        case 'broadcast':
          host.broadcast(e.network, e.message);
          return;
        case 'replace':
          host.replace(e.network, e.peerId);
          return;
        case 'records':
          void this.records.fetch(e.network).then(
            (records) => host.loadRecords(e.network, records),
            (err: unknown) => this.log(`redis: reading the registries of ${e.network}: ${String(err)}`),
          );
          return;
        case 'rules': {
          this.rulesSeen.set(e.network, JSON.stringify(e.rules));
          if (e.rules === null) this.rulesSeen.delete(e.network);
          host.governance.load(e.network, e.rules ?? undefined);
          return;
        }
        case 'reputation': {
          // What counted here and is not in Redis yet stays on top of the new totals.
          const now = host.reputation.records();
          const merged: Record<string, KeyRecord> = {};
          for (const [peerId, total] of Object.entries(e.records)) {
            const seen = this.reputationSeen.get(peerId) ?? { verified: 0, wrong: 0, timeouts: 0 };
            const mine = now[peerId] ?? seen;
            merged[peerId] = { verified: total.verified + mine.verified - seen.verified, wrong: total.wrong + mine.wrong - seen.wrong, timeouts: total.timeouts + mine.timeouts - seen.timeouts };
            this.reputationSeen.set(peerId, total);
          }
          host.reputation.load(merged);
          return;
        }
        case 'coord': {
          const { network, peerId, op, src } = e;
          const reply: Reply = (message) => {
            if (src === this.id) {
              host.deliver(network, peerId, message);
              return;
            }
            void this.publish(src, { k: 'deliver', network, peerId, message }).catch((err: unknown) => this.log(`redis: reply to ${src}: ${String(err)}`));
          };
          // Not (or no longer) the holder: on to whoever is, a few times at most.
          const run = this.leading.has(network) ? this.execute(network, peerId, op, reply) : (e.hops ?? 0) < 3 ? this.run(network, peerId, op, reply, (e.hops ?? 0) + 1) : Promise.resolve();
          void run.catch((err: unknown) => this.log(`${network}: ${op.op} from ${peerId}: ${String(err)}`));
          return;
        }
      }
    } catch (err) {
      this.log(`redis: handling ${e.k}: ${(err as Error)?.stack ?? String(err)}`);
    }
  }

  /** Publishes to one process; false when it does not listen (gone). */
  private async publish(processId: string, envelope: Body): Promise<boolean> {
    const receivers = await this.redis.publish(this.keys.channel(processId), JSON.stringify({ ...envelope, src: this.id }));
    return receivers > 0;
  }

  private async publishAll(envelope: Body): Promise<void> {
    await this.redis.publish(this.keys.everyone, JSON.stringify({ ...envelope, src: this.id }));
  }

  /** Renews locations and leases, takes free leases of networks with members, and drops the peers of dead processes. */
  private async tick(): Promise<void> {
    if (this.ticking || this.closed || !this.host) return;
    this.ticking = true;
    try {
      const mine = [...this.host.local()].map(([network, peerId]) => this.keys.location(network, peerId));
      for (let i = 0; i < mine.length; i += SWEEP_SLICE) {
        const keys = mine.slice(i, i + SWEEP_SLICE);
        await this.redis.eval(RENEW_MINE, keys.length, ...keys, this.id, this.leaseMs);
      }
      for (const network of [...this.leading]) {
        const renewed = await this.redis.eval(RENEW_IF, 1, this.keys.lease(network), this.id, this.leaseMs);
        if (renewed !== 1) {
          this.leading.delete(network);
          this.log(`${network}: lost the coordinator lease`);
        }
      }
      // Stale peers are looked for once per lease (their locations expire after one anyway).
      if (Date.now() - this.sweptAt >= this.leaseMs) {
        this.sweptAt = Date.now();
        for (const network of await this.registry.networks()) {
          if ((await this.leader(network)) === this.id) await this.sweep(network);
        }
      }
    } catch (err) {
      this.log(`redis: renewal: ${String(err)}`);
    } finally {
      this.ticking = false;
    }
  }

  /** Removes the network's peers whose process is gone (their location expired), telling everyone. */
  private async sweep(network: string): Promise<void> {
    // Ids only, locations in slices: at 10,000 peers parsing every PeerInfo each time, or one
    // MGET of them all, would hold up this process's relays and Redis's.
    const ids = await this.registry.ids(network);
    if (ids.length === 0) {
      this.leading.delete(network);
      await this.redis.eval(DELETE_IF, 1, this.keys.lease(network), this.id);
      return;
    }
    const gone: string[] = [];
    for (let i = 0; i < ids.length; i += SWEEP_SLICE) {
      const slice = ids.slice(i, i + SWEEP_SLICE);
      const at = await this.redis.mget(...slice.map((peerId) => this.keys.location(network, peerId)));
      for (const [j, peerId] of slice.entries()) if (at[j] === null) gone.push(peerId);
    }
    let dropped = 0;
    for (const peerId of gone) {
      if (!(await this.registry.removeWhere(network, peerId, '-'))) continue;
      dropped++;
      const leave: ServerMessage = { type: 'leave', peerId, reason: 'timeout' };
      this.host!.tell(network, peerId, leave);
      await this.publishAll({ k: 'tell', network, peerId, message: leave });
    }
    if (!dropped) return;
    this.log(`${network}: dropped ${dropped} peers whose signaling process is gone`);
    if ((await this.registry.count(network)) === 0) {
      this.host!.governance.forget(network);
      this.host!.forgetRecords(network);
    }
    await this.host!.coordinator.changed(network);
  }

  private async flushReputation(): Promise<void> {
    const host = this.host;
    if (!host) return;
    const snapshot = host.reputation.records();
    const changed = Object.entries(snapshot).filter(([peerId, r]) => {
      const seen = this.reputationSeen.get(peerId);
      return !seen || seen.verified !== r.verified || seen.wrong !== r.wrong || seen.timeouts !== r.timeouts;
    });
    if (changed.length === 0) return;
    const multi = this.redis.multi();
    for (const [peerId, r] of changed) {
      const seen = this.reputationSeen.get(peerId) ?? { verified: 0, wrong: 0, timeouts: 0 };
      multi.hincrby(this.keys.reputation, `${peerId}:v`, r.verified - seen.verified);
      multi.hincrby(this.keys.reputation, `${peerId}:w`, r.wrong - seen.wrong);
      multi.hincrby(this.keys.reputation, `${peerId}:t`, r.timeouts - seen.timeouts);
    }
    const results = (await multi.exec()) ?? [];
    const totals: Record<string, KeyRecord> = {};
    const now = host.reputation.records();
    for (const [i, [peerId, r]] of changed.entries()) {
      const [v, w, t] = [0, 1, 2].map((j) => Number(results[i * 3 + j]?.[1] ?? 0)) as [number, number, number];
      this.reputationSeen.set(peerId, { verified: v, wrong: w, timeouts: t });
      // What counted here while the write was in flight is kept on top of the totals.
      const late = now[peerId] ?? r;
      totals[peerId] = { verified: v + late.verified - r.verified, wrong: w + late.wrong - r.wrong, timeouts: t + late.timeouts - r.timeouts };
    }
    host.reputation.load(totals);
    await this.publishAll({ k: 'reputation', records: Object.fromEntries([...changed].map(([peerId]) => [peerId, this.reputationSeen.get(peerId)!])) });
  }
}
