// The signaling logic: admits sockets, validates every frame, joins peers to networks, relays
// signals and declines between members, resolves glare, and drops dead or stuck peers. Serving
// (serve, status, route) and the re-placement that membership changes cause go to the coordinator.
import type { RawData, WebSocket } from 'ws';
import {
  errorCode,
  errorMessage,
  helloPayload,
  judge,
  MAX_ACCUSE_FRAME_BYTES,
  opensAsAccusation,
  parseClientMessage,
  peerIdOf,
  verifySignature,
  MODELS_REPLY_EVERY_MS,
  PROTOCOL_VERSION,
  signTicket,
  type ClientMessage,
  type ErrorCode,
  type Identity,
  type LeaveReason,
  type ModelCoverage,
  type PeerServing,
  type PeerInfo,
  type ServerMessage,
} from '../protocol/index.ts';
import { Connection, MAX_BUFFERED_BYTES } from './connection.ts';
import { Coordinator } from './coordinator.ts';
import { Governance, type NetworkRules } from './governance.ts';
import { BlockRegistry } from './blocks.ts';
import { PipelineBlocks, reservedModelId } from './pipeline-blocks.ts';
import { VdagRegistry } from './vdags.ts';
import { PolicyRegistry } from './policies.ts';
import { PolicyHooks } from './policy-hooks.ts';
import type { WorkerSandboxStats } from '../policy/worker-sandbox.ts';
import { Reputation, type KeyStanding } from './reputation.ts';
import { Credits } from './credits.ts';
import { RecentRoutes, routesView } from './recent-routes.ts';
import type { RoutesView } from '../protocol/routes-view.ts';
import type { SourcePolicy } from './sources.ts';
import { Directory } from './directory.ts';
import { OfferBook } from './glare.ts';
import type { RegistryStore } from './registry.ts';
import type { DataDir, StoredNetwork } from './data-dir.ts';
import type { WelcomeIce } from './ice.ts';
import { MemoryServingStore } from './serving-store.ts';
import type { ClusterHost, CoordinatorApi, RedisCluster } from './redis-cluster.ts';
import type { NetworkRecords } from './redis-records.ts';
import type { SignalingMetrics } from './metrics.ts';

export interface HubOptions {
  store: RegistryStore;
  /** Where served models, network rules and reputations outlive a restart; memory only without. */
  data?: DataDir;
  /**
   * Several signaling processes on one Redis (redis-cluster.ts): the registry, serving store,
   * rules, reputations and ticket key are shared there, and sockets of other processes are
   * reached through it. Takes the data folder's place.
   */
  cluster?: RedisCluster;
  /** How long restored placements stand while their peers come back (Coordinator's recoveryMs). */
  recoveryMs?: number;
  /** A serving peer silent this long leaves routes until it reports again (Coordinator's unhealthyAfterMs). */
  unhealthyAfterMs?: number;
  /** What /metrics counts (metrics.ts): the coordinator's routes and reports, verdicts, accusations. */
  metrics?: SignalingMetrics;
  heartbeatMs: number;
  maxPeersPerNetwork: number;
  maxConnectionsPerIp: number;
  messagesPerSecond: number;
  maxFrameBytes: number;
  /** A socket that has not said hello by then is closed, so idle sockets cannot hold slots. */
  helloTimeoutMs: number;
  /** Where served models may load weights from. */
  sources: SourcePolicy;
  /** The peer id that owns every network; else each network's first peer does. */
  owner?: string;
  /** Networks up to this size keep a complete directory (every join announced to all); larger ones are looked up. */
  fullDirectoryPeers: number;
  /** The key that signs route tickets; its public half goes out in every welcome. */
  serverKey: Identity;
  /** The ICE servers (with credentials minted for the peer) and policy each welcome carries. */
  ice?: ((peerId: string) => WelcomeIce) & { renewMs?: number };
  log: (line: string) => void;
}

type Msg<T extends ClientMessage['type']> = Extract<ClientMessage, { type: T }>;

const SHUTDOWN_GRACE_MS = 1_000;
/** The heartbeat visits the connections in this many turns, one per tick (server.ts ticks this often per heartbeat). */
export const HEARTBEAT_SLICES = 100;

export class Hub {
  private readonly connections = new Set<Connection>();
  /** The connections in turns of the heartbeat: tick() visits one slice, each once per heartbeatMs. */
  private readonly heartbeatSlices = Array.from({ length: HEARTBEAT_SLICES }, () => new Set<Connection>());
  private nextSlice = 0;
  private sliceCursor = 0;
  /** network -> peerId -> connection: the sockets behind the store's PeerInfo. */
  private readonly members = new Map<string, Map<string, Connection>>();
  private readonly perIp = new Map<string, number>();
  private readonly offers = new OfferBook();
  private readonly directory = new Directory();
  private readonly coordinator: CoordinatorApi;
  private readonly cluster: RedisCluster | undefined;
  private readonly governance: Governance;
  private readonly blocks: BlockRegistry;
  private readonly pipelineBlocks: PipelineBlocks;
  private readonly vdags: VdagRegistry;
  private readonly policies: PolicyRegistry;
  /** Runs the networks' route, placement, admission and quota policies (in worker threads). */
  private readonly hooks: PolicyHooks;
  private readonly reputation: Reputation;
  /** Credit ledgers; none with a shared Redis (each process would keep its own). */
  private readonly credits: Credits | undefined;
  private readonly served: MemoryServingStore;
  /** Routes this process's coordinator handed out lately (under Redis: those of the networks it coordinates). */
  private readonly recentRoutes = new RecentRoutes();
  private stopping = false;

  constructor(private readonly opts: HubOptions) {
    const { data, cluster } = opts;
    this.cluster = cluster;
    const restored = data?.restored.networks ?? {};
    const saveServing = () => data?.saveServing(() => this.storedNetworks());
    const rules = cluster?.restoredRules ?? Object.fromEntries(Object.entries(restored).flatMap(([network, n]) => (n.rules ? [[network, n.rules]] : [])));
    this.governance = new Governance(opts.owner, rules, cluster ? () => cluster.rulesChanged() : saveServing);
    // Each registry's kept records, by network: from the data folder, or the records in a shared Redis.
    const sources: Record<string, Partial<NetworkRecords>> = cluster?.restoredRecords ?? restored;
    const kept = <K extends keyof NetworkRecords>(field: K) =>
      Object.fromEntries(Object.entries(sources).flatMap(([network, n]) => (n[field]?.length ? [[network, n[field]!]] : []))) as Record<string, NetworkRecords[K]>;
    const saveRecords = cluster ? () => cluster.recordsChanged(() => this.networkRecords()) : saveServing;
    this.blocks = new BlockRegistry(this.governance, kept('blocks'), saveRecords);
    this.vdags = new VdagRegistry(this.governance, this.blocks, kept('vdags'), saveRecords);
    this.policies = new PolicyRegistry(this.governance, kept('policies'), saveRecords);
    this.hooks = new PolicyHooks({
      policy: (network, hook) => this.policies.active(network, hook),
      isOwner: (network, peerId) => this.governance.isOwner(network, peerId),
      onFailure: (hook) => opts.metrics?.onPolicyFailure(hook),
      replan: (network) => void this.coordinator.changed(network).catch((err: unknown) => opts.log(`${network}: re-placement after a policy change failed: ${String(err)}`)),
      log: opts.log,
    });
    this.hooks.warm(Object.values(this.policies.all()).flat());
    this.reputation = new Reputation(cluster?.restoredReputation ?? data?.restored.reputation, () => (cluster ? cluster.reputationChanged() : data?.saveReputation(() => this.reputation.records())));
    this.credits = cluster ? undefined : new Credits({ governance: this.governance, restored: data?.restored.credits, onChange: () => data?.saveCredits(() => this.credits!.stored()), metrics: opts.metrics, log: opts.log });
    this.served = new MemoryServingStore(Object.fromEntries(Object.entries(restored).map(([network, n]) => [network, n.models])), saveServing);
    const coordinator = new Coordinator({
      governance: this.governance,
      reputation: this.reputation,
      registry: opts.store,
      store: cluster?.serving ?? this.served,
      restored: Object.entries(restored).filter(([, n]) => n.models.length > 0).map(([network]) => network),
      recoveryMs: opts.recoveryMs,
      unhealthyAfterMs: opts.unhealthyAfterMs,
      metrics: opts.metrics,
      recentRoutes: this.recentRoutes,
      credits: this.credits,
      hooks: this.hooks,
      send: (network, peerId, message) => {
        if (cluster) void cluster.send(network, peerId, message).catch((err: unknown) => opts.log(`${network}/${peerId}: ${message.type} not sent: ${String(err)}`));
        else this.members.get(network)?.get(peerId)?.send(message);
      },
      broadcast: (network, message) => {
        this.broadcast(network, message);
        cluster?.broadcast(network, message);
      },
      sources: opts.sources,
      signTicket: (fields) => signTicket(opts.serverKey, fields),
      log: opts.log,
    });
    this.coordinator = cluster ? cluster.attach(this.clusterHost(coordinator)) : coordinator;
    this.pipelineBlocks = new PipelineBlocks(this.blocks, this.governance, opts.sources, this.coordinator);
  }

  /** What the cluster may do with this process's sockets: deliver, tell, announce, replace. */
  private clusterHost(coordinator: Coordinator): ClusterHost {
    const local = (network: string, peerId: string) => {
      const conn = this.members.get(network)?.get(peerId);
      return conn?.peer ? conn : undefined;
    };
    return {
      coordinator,
      governance: this.governance,
      reputation: this.reputation,
      loadRecords: (network, records) => {
        this.blocks.load(network, records?.blocks ?? []);
        this.vdags.load(network, records?.vdags ?? []);
        this.policies.load(network, records?.policies ?? []);
        this.hooks.warm(records?.policies ?? []);
      },
      forgetRecords: (network) => {
        this.blocks.forget(network);
        this.vdags.forget(network);
        this.policies.forget(network);
      },
      deliver: (network, peerId, message) => {
        const conn = local(network, peerId);
        if (!conn) return false;
        // The receiver links to a signal's sender and to a route's hops: it hears if they leave.
        if (message.type === 'signal') this.directory.note(conn, message.from);
        if (message.type === 'route') for (const hop of message.hops) this.directory.note(conn, hop.peerId);
        conn.send(message);
        return true;
      },
      tell: (network, peerId, message) => {
        this.tell(this.directory.audience(network, peerId), message);
        if (message.type === 'leave') this.directory.forgetPeer(network, peerId);
      },
      announce: (network, peer) => {
        const peers = this.members.get(network);
        if (peers) this.announce(peers.values(), { type: 'join', peer }, undefined);
      },
      broadcast: (network, message) => this.broadcast(network, message),
      replace: (network, peerId) => {
        const old = local(network, peerId);
        if (!old) return;
        old.enqueue(async () => {
          this.opts.log(`${old.label} reconnected to another signaling process; replacing its socket here`);
          await this.detach(old, 'replaced');
          old.error('ERR_REPLACED', `another connection joined as ${network}/${peerId}`);
          old.close(4001, 'replaced');
        });
      },
      local: () => [...this.members].flatMap(([network, peers]) => [...peers.keys()].map((peerId): [string, string] => [network, peerId])),
    };
  }

  /** What the data folder keeps of each network: its rules and served models. */
  /** Every network's blocks, vDAGs and policies, as a shared Redis keeps them. */
  private networkRecords(): Record<string, NetworkRecords> {
    const [blocks, vdags, policies] = [this.blocks.all(), this.vdags.all(), this.policies.all()];
    const names = new Set([...Object.keys(blocks), ...Object.keys(vdags), ...Object.keys(policies)]);
    return Object.fromEntries([...names].map((network) => [network, { blocks: blocks[network] ?? [], vdags: vdags[network] ?? [], policies: policies[network] ?? [] }]));
  }

  private storedNetworks(): Record<string, StoredNetwork> {
    const models = this.served.stored();
    const rules = this.governance.all();
    const blocks = this.blocks.all();
    const vdags = this.vdags.all();
    const policies = this.policies.all();
    const names = new Set([...Object.keys(models), ...Object.keys(rules), ...Object.keys(blocks), ...Object.keys(vdags), ...Object.keys(policies)]);
    return Object.fromEntries(
      [...names].map((network) => [
        network,
        {
          ...(rules[network] ? { rules: rules[network] } : {}),
          models: models[network] ?? [],
          ...(blocks[network] ? { blocks: blocks[network] } : {}),
          ...(vdags[network] ? { vdags: vdags[network] } : {}),
          ...(policies[network] ? { policies: policies[network] } : {}),
        },
      ]),
    );
  }

  /** Per-model coverage of a network, for the HTTP view. */
  coverage(network: string): Promise<ModelCoverage[]> {
    return this.coordinator.coverage(network);
  }

  /** A network's owner and who may serve on it, for the HTTP view. */
  rules(network: string): NetworkRules | undefined {
    return this.governance.of(network);
  }

  /** What clients found of each member's work, for the HTTP view. */
  async trust(network: string): Promise<Record<string, KeyStanding>> {
    const peers = await this.opts.store.list(network);
    return Object.fromEntries(peers.map(({ peerId }) => [peerId, this.reputation.standing(peerId)]));
  }

  /** The routes handed out lately with each hop's reported latency, for the HTTP view. */
  async routes(network: string): Promise<RoutesView> {
    return routesView(network, this.recentRoutes.list(network), await this.serving(network));
  }

  /** The policy sandbox's workers and calls (undefined until a server-hook policy needed it). */
  policySandbox(): WorkerSandboxStats | undefined {
    return this.hooks.stats();
  }

  /** Which peer serves what, with its last status, for the HTTP view. */
  serving(network: string): Promise<PeerServing[]> {
    return this.coordinator.serving(network);
  }

  accept(ws: WebSocket, remoteAddress: string | undefined): void {
    const ip = normalizeIp(remoteAddress);
    const conn = new Connection(ws, ip, this.opts.messagesPerSecond, this.opts.log);
    ws.on('error', (err) => this.opts.log(`socket error from ${conn.label}: ${err.message}`));
    if (this.stopping) {
      conn.error('ERR_SERVER_SHUTDOWN');
      conn.close(1001, 'server shutdown');
      return;
    }
    const count = this.perIp.get(ip) ?? 0;
    if (count >= this.opts.maxConnectionsPerIp) {
      conn.error('ERR_TOO_MANY_CONNECTIONS', `at most ${this.opts.maxConnectionsPerIp} connections per address`);
      conn.close(1008, 'too many connections');
      return;
    }
    this.perIp.set(ip, count + 1);
    this.connections.add(conn);
    this.heartbeatSlices[this.nextSlice++ % this.heartbeatSlices.length]!.add(conn);
    conn.send({ type: 'challenge', nonce: conn.nonce });
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('message', (data) => this.guard(() => this.onFrame(conn, data)));
    ws.on('close', () =>
      this.guard(() => {
        conn.closed = true;
        clearTimeout(conn.iceRenewal);
        this.connections.delete(conn);
        for (const slice of this.heartbeatSlices) slice.delete(conn);
        const left = (this.perIp.get(ip) ?? 1) - 1;
        if (left > 0) this.perIp.set(ip, left);
        else this.perIp.delete(ip);
        conn.enqueue(() => this.detach(conn, conn.leaveReason));
      }),
    );
  }

  /** Sends the peer fresh TURN credentials before those it holds expire, for as long as it stays. */
  private renewIce(conn: Connection, peerId: string): void {
    const { ice } = this.opts;
    if (!ice?.renewMs) return;
    clearTimeout(conn.iceRenewal);
    conn.iceRenewal = setTimeout(() => {
      if (conn.closed || conn.peer?.peerId !== peerId) return;
      const { iceServers = [], iceTransportPolicy } = ice(peerId);
      conn.send({ type: 'ice', iceServers, ...(iceTransportPolicy ? { iceTransportPolicy } : {}) });
      this.renewIce(conn, peerId);
    }, ice.renewMs);
    conn.iceRenewal.unref?.();
  }

  /**
   * Heartbeat, one slice of the sockets per call (HEARTBEAT_SLICES calls per heartbeat): ping
   * each; one that missed the previous ping is dead.
   */
  tick(): void {
    // One slice per tick: pinging thousands of sockets at once would hold every relay up.
    const slice = this.heartbeatSlices[this.sliceCursor]!;
    this.sliceCursor = (this.sliceCursor + 1) % this.heartbeatSlices.length;
    for (const conn of slice) {
      this.guard(() => {
        if (conn.closed) return;
        if (!conn.peer && Date.now() - conn.openedAt > this.opts.helloTimeoutMs) {
          conn.error('ERR_NOT_JOINED', `no hello within ${this.opts.helloTimeoutMs} ms`);
          conn.close(1008, 'no hello');
          return;
        }
        if (!conn.alive || conn.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
          this.opts.log(`${conn.label} missed a heartbeat or does not read; dropping it`);
          conn.terminate('timeout');
          return;
        }
        conn.alive = false;
        if (conn.open) conn.ws.ping();
      });
    }
    if (this.sliceCursor === 0) this.offers.sweep();
  }

  /** Tells every joined peer the server stops, closes all sockets, and waits briefly for them. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    this.coordinator.close();
    await this.hooks.close();
    const all = [...this.connections];
    const closed = all.map((c) => new Promise<void>((resolve) => (c.closed ? resolve() : c.ws.once('close', () => resolve()))));
    for (const conn of all) {
      this.guard(() => {
        if (conn.peer) conn.send({ type: 'leave', peerId: conn.peer.peerId, reason: 'shutdown' });
        conn.close(1001, 'server shutdown');
      });
    }
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)));
    await Promise.race([Promise.all(closed), grace]);
    clearTimeout(timer);
    for (const conn of all) conn.terminate('shutdown');
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.opts.log(`signaling error: ${(err as Error)?.stack ?? String(err)}`);
    }
  }

  private onFrame(conn: Connection, data: RawData): void {
    if (!conn.open || !conn.admit()) return;
    const bytes = toBytes(data);
    const accusation = opensAsAccusation(bytes);
    const max = accusation ? MAX_ACCUSE_FRAME_BYTES : this.opts.maxFrameBytes;
    if (bytes.byteLength > max) {
      // Answered in order with the rest, without keeping the oversized frame queued.
      const size = bytes.byteLength;
      conn.enqueue(() => conn.error('ERR_FRAME_TOO_LARGE', `frame of ${size} bytes exceeds ${max}`));
      return;
    }
    // An accusation may be large: its rate is held before it is even queued or parsed.
    if (accusation && !conn.admitType('accuse')) return;
    conn.enqueue(() => this.handle(conn, bytes, accusation));
  }

  private async handle(conn: Connection, bytes: Uint8Array, admittedAccusation = false): Promise<void> {
    if (!conn.open) return;
    const parsed = parseClientMessage(bytes, admittedAccusation ? MAX_ACCUSE_FRAME_BYTES : this.opts.maxFrameBytes);
    if (!parsed.ok) return conn.error(parsed.code, parsed.message, parsed.ref, parsed.requestId);
    const msg = parsed.message;
    if (admittedAccusation && msg.type !== 'accuse' && bytes.byteLength > this.opts.maxFrameBytes) {
      return conn.error('ERR_FRAME_TOO_LARGE', `a ${msg.type} frame of ${bytes.byteLength} bytes exceeds ${this.opts.maxFrameBytes}`, msg.type);
    }
    if (msg.type === 'hello') return this.hello(conn, msg);
    if (!conn.peer) return conn.error('ERR_NOT_JOINED', `send hello before ${msg.type}`, msg.type);
    const admitted = admittedAccusation && msg.type === 'accuse';
    if (!admitted && !conn.admitType(msg.type, msg.type === 'route' ? msg.requestId : undefined)) return;
    switch (msg.type) {
      case 'update':
        return this.update(conn, conn.peer, msg);
      case 'signal':
        return this.signal(conn, conn.peer, msg);
      case 'decline':
        return this.decline(conn, conn.peer, msg);
      case 'ping':
        return conn.send({ type: 'pong', id: msg.id, serverTime: Date.now() });
      case 'serve':
        if (reservedModelId(msg.model.modelId)) return conn.error('ERR_INVALID_ARGUMENT', reservedModelId(msg.model.modelId)!, 'serve');
        return this.coordinator.serve(conn.network, conn.peer.peerId, msg.model, (m) => conn.send(m));
      case 'status':
        return this.coordinator.status(conn.network, conn.peer.peerId, msg, (m) => conn.send(m));
      case 'route':
        return this.coordinator.route(conn.network, conn.peer.peerId, msg, (m) => {
          // The client links to its hops: it hears if one of them leaves.
          if (m.type === 'route') for (const hop of m.hops) this.directory.note(conn, hop.peerId);
          conn.send(m);
        });
      case 'lookup':
        return this.lookup(conn, msg);
      case 'models':
        return this.answerModels(conn);
      case 'withdraw':
        if (reservedModelId(msg.modelId)) return conn.error('ERR_INVALID_ARGUMENT', reservedModelId(msg.modelId)!, 'withdraw');
        return this.coordinator.withdraw(conn.network, conn.peer.peerId, msg.modelId, (m) => conn.send(m));
      case 'policy':
        return this.setPolicy(conn, conn.peer.peerId, msg);
      case 'verdict':
        this.opts.metrics?.verdicts(msg.verdicts);
        // Counted where the client's routes were handed out (another process's coordinator, maybe).
        if (this.cluster) return this.cluster.verdict(conn.network, conn.peer.peerId, msg.verdicts);
        this.reputation.record(conn.peer.peerId, msg.verdicts);
        return;
      case 'accuse':
        return this.accuse(conn, conn.peer.peerId, msg);
      case 'usage':
      case 'credits':
      case 'grant':
        // Ledgers kept per process would disagree: not offered with a shared Redis yet. Usage
        // reports go unanswered there (every client sends them; an error each would be noise).
        if (!this.credits) {
          if (msg.type === 'usage') return;
          return conn.error('ERR_NOT_AVAILABLE', 'credits are not kept by signaling processes sharing a Redis yet; use one process with a data folder', msg.type, msg.requestId);
        }
        return this.credits.answer(conn, conn.network, conn.peer.peerId, msg, (m) => conn.send(m));
      case 'blocks':
      case 'vdags':
      case 'policies': {
        const reply = (m: ServerMessage) => conn.send(m);
        if (msg.type === 'blocks') return this.pipelineBlocks.handle(conn.network, conn.peer.peerId, msg, reply);
        if (msg.type === 'vdags') return this.vdags.handle(conn.network, conn.peer.peerId, msg, reply);
        // A changed server-hook policy: the sandbox loads ahead of use, a placement policy re-places.
        const changed = msg.op !== 'get' && msg.op !== 'list';
        return this.policies.handle(conn.network, conn.peer.peerId, msg, (m) => {
          reply(m);
          if (changed && m.type === 'policies') this.hooks.changed(conn.network, m.policies);
        });
      }
    }
  }

  /** Judges an accusation's evidence; a convicted key that falls below the line leaves placement. */
  private async accuse(conn: Connection, client: string, msg: Msg<'accuse'>): Promise<void> {
    const reply = (r: { counted: boolean; accused?: string; code?: ErrorCode; message: string }) => conn.send({ type: 'judged', id: msg.id, ...r });
    if (this.reputation.ignoring(client)) {
      this.opts.metrics?.accusation('ignored');
      return reply({ counted: false, code: 'ERR_PERMISSION_DENIED', message: `${client} sent forged evidence; its reports are ignored for a while` });
    }
    let accused: string;
    try {
      ({ accused } = await judge(msg, { network: conn.network, client, serverKey: this.opts.serverKey.publicKey }));
    } catch (err) {
      const code = errorCode(err);
      if (code === 'ERR_BAD_EVIDENCE') this.reputation.forged(client);
      this.opts.metrics?.accusation('refused');
      this.opts.log(`${conn.label}'s accusation on ${msg.modelId} refused: ${errorMessage(err)}`);
      return reply({ counted: false, code, message: errorMessage(err).slice(0, 1024) });
    }
    const counted = this.reputation.convict(client, accused);
    this.opts.metrics?.accusation(counted ? 'convicted' : 'repeat');
    this.opts.log(`${conn.label} proved ${accused} wrong on ${msg.modelId}${counted ? '' : ' (already counted in this window)'}`);
    reply({ counted, accused, message: counted ? `${accused} was found wrong` : `${accused} was already found wrong by this client lately` });
    // A key that fell below the line leaves placement now, in every network it is in, not at each
    // one's next membership change.
    if (!this.reputation.excluded(accused)) return;
    const networks = [...this.members].filter(([, peers]) => peers.has(accused)).map(([network]) => network);
    await Promise.all(networks.map((network) => this.coordinator.changed(network)));
  }

  /**
   * Answers `models` requests, at most once per MODELS_REPLY_EVERY_MS per connection: requests
   * inside that window share one answer at its end (the list is current when it is sent), so a
   * 17-byte request cannot draw a large reply at the rate it is sent, and a polling client still
   * hears every time.
   */
  private async answerModels(conn: Connection): Promise<void> {
    if (conn.modelsAnswerDue) return;
    const wait = conn.modelsAnsweredAt + MODELS_REPLY_EVERY_MS - performance.now();
    const answer = async () => {
      conn.modelsAnswerDue = false;
      conn.modelsAnsweredAt = performance.now();
      conn.send({ type: 'models', models: await this.coordinator.coverage(conn.network) });
    };
    if (wait <= 0) return answer();
    // Later, outside the connection's queue, so its other messages are not held up.
    conn.modelsAnswerDue = true;
    setTimeout(() => void answer().catch((err: unknown) => this.opts.log(`models answer for ${conn.label}: ${String(err)}`)), wait).unref();
  }

  private async hello(conn: Connection, msg: Msg<'hello'>): Promise<void> {
    if (conn.peer) return conn.error('ERR_ALREADY_JOINED', `already joined ${conn.label}`, 'hello');
    const { network, peerId } = msg;
    const refused = await this.refuseIdentity(conn, msg);
    if (refused) {
      this.opts.log(`${conn.label} refused as ${network}/${peerId}: ${refused[1]}`);
      conn.error(refused[0], refused[1], 'hello');
      conn.close(1008, 'identity refused');
      return;
    }
    // The network's admission policy (its owner always passes).
    const admission = await this.hooks.admission(network, peerId, msg.capabilities);
    if (!admission.admit) {
      this.opts.log(`${conn.label} refused as ${network}/${peerId}: ${admission.reason}`);
      conn.error(admission.code, admission.reason, 'hello');
      conn.close(1008, 'admission refused');
      return;
    }
    const count = await this.opts.store.count(network);
    if (!conn.open) return;
    const old = this.members.get(network)?.get(peerId);
    if (!old && count >= this.opts.maxPeersPerNetwork) {
      conn.error('ERR_NETWORK_FULL', `network ${network} has ${count} peers, the cap`, 'hello');
      conn.close(1008, 'network full');
      return;
    }
    // A peer back from a network blip reconnects before the heartbeat drops its old socket.
    // Only the key's holder gets here, so the old socket is this peer's own (or a copy of its key
    // running elsewhere, which is told why it is dropped and stops reconnecting).
    if (old) {
      this.opts.log(`${old.label} reconnected; replacing its old socket`);
      await this.detach(old, 'replaced');
      old.error('ERR_REPLACED', `another connection joined as ${network}/${peerId}`);
      old.close(4001, 'replaced');
    }
    // Held here from now on; a socket of this id on another process is replaced.
    await this.cluster?.claim(network, peerId);
    if (!conn.open) return;
    const peer: PeerInfo = { peerId, capabilities: msg.capabilities, joinedAt: Date.now() };
    let peers = this.members.get(network);
    if (!peers) this.members.set(network, (peers = new Map()));
    peers.set(peerId, conn);
    conn.peer = peer;
    conn.network = network;
    const rules = this.governance.joined(network, peerId);
    await this.opts.store.add(network, peer);
    const total = await this.opts.store.count(network);
    const complete = total <= this.opts.fullDirectoryPeers;
    // A large network's directory is looked up, not sent: a welcome to each of n peers listing
    // the others would cost n^2.
    const others = complete ? (await this.opts.store.list(network)).filter((p) => p.peerId !== peerId) : [];
    for (const other of others) this.directory.note(conn, other.peerId);
    conn.send({
      type: 'welcome',
      protocolVersion: PROTOCOL_VERSION,
      peerId,
      network,
      peers: others,
      heartbeatMs: this.opts.heartbeatMs,
      owner: rules.owner,
      limits: { maxFrameBytes: this.opts.maxFrameBytes, messagesPerSecond: this.opts.messagesPerSecond },
      serverKey: this.opts.serverKey.publicKey,
      ...this.opts.ice?.(peerId),
      directory: { total: total - 1, complete },
    });
    this.renewIce(conn, peerId);
    if (complete) this.announce(peers.values(), { type: 'join', peer }, conn);
    if (complete) await this.cluster?.joined(network, peer);
    this.opts.log(`${conn.label} joined (${total} in network)`);
    await this.coordinator.joined(network, peerId);
  }

  /** Why a hello's identity is refused ([code, message]), or undefined when it proves its id. */
  private async refuseIdentity(conn: Connection, msg: Msg<'hello'>): Promise<[ErrorCode, string] | undefined> {
    if (peerIdOf(msg.publicKey) !== msg.peerId) {
      return ['ERR_IDENTITY_MISMATCH', `peer id ${msg.peerId} is not the one public key ${msg.publicKey} derives (${peerIdOf(msg.publicKey)})`];
    }
    if (!(await verifySignature(msg.publicKey, helloPayload(conn.nonce, msg.network, msg.peerId), msg.signature))) {
      return ['ERR_BAD_SIGNATURE', `hello for ${msg.network}/${msg.peerId} is not signed over this connection's challenge by its key`];
    }
    return undefined;
  }

  /** Only the network's owner sets who may serve and from where; the rules go back to it. */
  private setPolicy(conn: Connection, peerId: string, msg: Msg<'policy'>): void {
    const network = conn.network;
    if (!this.governance.isOwner(network, peerId)) {
      return conn.error('ERR_PERMISSION_DENIED', `only the owner of network ${network} (${this.governance.of(network)?.owner}) sets who may serve`, 'policy');
    }
    if (msg.credits && !this.credits) return conn.error('ERR_NOT_AVAILABLE', 'credits are not kept by signaling processes sharing a Redis yet', 'policy');
    const rules = this.governance.setPolicy(network, msg)!;
    const from = rules.sources === 'server' ? "the server's sources" : `${rules.sources.length} source prefixes`;
    this.opts.log(`${network}: owner ${peerId} lets ${rules.servers === 'anyone' ? 'anyone' : `${rules.servers.length} listed peers`} serve, from ${from}`);
    if (msg.credits) this.opts.log(`${network}: owner ${peerId} sets credits ${JSON.stringify(this.credits!.rules(network))}`);
    conn.send({ type: 'policy', network, owner: rules.owner, servers: rules.servers, sources: rules.sources, ...(this.credits ? { credits: this.credits.rules(network) } : {}) });
  }

  private async update(conn: Connection, peer: PeerInfo, msg: Msg<'update'>): Promise<void> {
    const next: PeerInfo = { ...peer, capabilities: msg.capabilities };
    conn.peer = next;
    await this.opts.store.add(conn.network, next);
    this.tell(this.directory.audience(conn.network, next.peerId), { type: 'update', peer: next });
    await this.cluster?.updated(conn.network, next);
    await this.coordinator.changed(conn.network);
  }

  private async signal(conn: Connection, peer: PeerInfo, msg: Msg<'signal'>): Promise<void> {
    const from = peer.peerId;
    // A peer on another process: relayed there. Crossing offers between processes are settled by
    // the peers' own glare rule (mesh.ts), the same one the server applies here.
    if (await this.relayed(conn, msg.to, { type: 'signal', from, data: msg.data }, 'signal')) return;
    const target = this.target(conn, msg.to, 'signal');
    if (!target) return;
    if (msg.data.type === 'offer') {
      const verdict = this.offers.offer(conn.network, from, msg.to);
      if (!verdict.relay) return conn.send({ type: 'glare', peerId: msg.to });
      // The loser hears about glare first, so it drops its own offer before it sees this one.
      if (verdict.glareTo) target.send({ type: 'glare', peerId: from });
    } else if (msg.data.type === 'answer') {
      this.offers.answered(conn.network, from, msg.to);
    }
    // The target links to the sender: it hears if the sender leaves.
    this.directory.note(target, from);
    target.send({ type: 'signal', from, data: msg.data });
  }

  private async decline(conn: Connection, peer: PeerInfo, msg: Msg<'decline'>): Promise<void> {
    if (await this.relayed(conn, msg.to, { type: 'decline', from: peer.peerId, reason: msg.reason }, 'decline')) return;
    const target = this.target(conn, msg.to, 'decline');
    if (!target) return;
    // A decline settles the offer it answers, like an answer does.
    this.offers.answered(conn.network, peer.peerId, msg.to);
    target.send({ type: 'decline', from: peer.peerId, reason: msg.reason });
  }

  /** Sends to a member held by another process; false when the target is here (or nowhere: refused by target()). */
  private async relayed(conn: Connection, to: string, message: ServerMessage, ref: string): Promise<boolean> {
    if (!this.cluster || this.members.get(conn.network)?.has(to) || to === conn.peer?.peerId) return false;
    if (!(await this.cluster.send(conn.network, to, message))) {
      conn.error('ERR_UNKNOWN_TARGET', `peer ${to} is not in network ${conn.network}`, ref);
      return true;
    }
    return true;
  }

  private target(conn: Connection, to: string, ref: string): Connection | undefined {
    const target = this.members.get(conn.network)?.get(to);
    if (target && target !== conn && target.peer) return target;
    const why = target === conn ? 'is yourself' : `is not in network ${conn.network}`;
    conn.error('ERR_UNKNOWN_TARGET', `peer ${to} ${why}`, ref);
    return undefined;
  }

  /** Removes a peer from its network and tells the others why; a no-op once detached. */
  private async detach(conn: Connection, reason: LeaveReason): Promise<void> {
    const peer = conn.peer;
    if (!peer) return;
    const network = conn.network;
    conn.peer = null;
    const peers = this.members.get(network);
    if (peers?.get(peer.peerId) === conn) {
      peers.delete(peer.peerId);
      if (peers.size === 0) {
        this.members.delete(network);
        this.credits?.forget(network); // its pending usage; the ledger stays
        // Rules outlive a server stopping, and a restored network whose peers are still coming back.
        // With several processes, the network's rules go when its last member anywhere leaves (cluster.left).
        if (!this.cluster && reason !== 'replaced' && !this.stopping && !this.coordinator.recovers(network)) {
          this.governance.forget(network);
          this.blocks.forget(network);
          this.vdags.forget(network);
          this.policies.forget(network);
        }
      }
    }
    this.offers.forget(network, peer.peerId);
    const leave: ServerMessage = { type: 'leave', peerId: peer.peerId, reason };
    if (!this.stopping) this.tell(this.directory.audience(network, peer.peerId), leave);
    this.directory.forgetPeer(network, peer.peerId);
    this.directory.forgetConnection(conn);
    this.opts.log(`${network}/${peer.peerId} left (${reason})`);
    // Skip the store when a new socket of the same peer took over (its entry is the live one).
    if (this.members.get(network)?.has(peer.peerId)) return;
    if (this.cluster) {
      // Another process holds the peer now (or this one stops): its entry stays.
      if (!(await this.cluster.left(network, peer.peerId, leave, this.stopping))) return;
    } else {
      await this.opts.store.remove(network, peer.peerId);
    }
    // A replaced peer is saying hello again right now: its layers stay where they are.
    if (!this.stopping && reason !== 'replaced') await this.coordinator.changed(network);
  }

  /** Answers a lookup with those of the peers asked that are in the network; the asker hears of them from now on. */
  private async lookup(conn: Connection, msg: Msg<'lookup'>): Promise<void> {
    const members = this.members.get(conn.network);
    const found: PeerInfo[] = [];
    for (const peerId of new Set(msg.peerIds)) {
      // Members of other processes are in the shared registry.
      const peer = members?.get(peerId)?.peer ?? (this.cluster && peerId !== conn.peer?.peerId ? await this.opts.store.get(conn.network, peerId) : undefined);
      if (!peer || peerId === conn.peer?.peerId) continue;
      this.directory.note(conn, peerId);
      found.push(peer);
    }
    conn.send({ type: 'peers', id: msg.id, peers: found });
  }

  /** Tells every member of `to` (but `except`) of a new peer; each hears of it from now on. */
  private announce(to: Iterable<Connection>, message: ServerMessage & { type: 'join' }, except: Connection | undefined): void {
    const text = JSON.stringify(message);
    for (const conn of to) {
      if (conn === except || !conn.peer) continue;
      this.directory.note(conn, message.peer.peerId);
      conn.sendText(text);
    }
  }

  private tell(to: Iterable<Connection>, message: ServerMessage): void {
    const text = JSON.stringify(message);
    for (const conn of to) if (conn.peer) conn.sendText(text);
  }

  private broadcast(network: string, message: ServerMessage, except?: Connection): void {
    const peers = this.members.get(network);
    if (!peers) return;
    const text = JSON.stringify(message);
    for (const conn of peers.values()) if (conn !== except) conn.sendText(text);
  }
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

/** Counts IPv4 clients the same whether they arrive on an IPv4 or a dual-stack IPv6 socket. */
function normalizeIp(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
