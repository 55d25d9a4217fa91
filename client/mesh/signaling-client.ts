// The connection to the signaling server: hello on every (re)connect, validation of what the
// server sends, keep-alive pings, and reconnection with exponential backoff and jitter.
import { EventEmitter } from 'events';
import {
  AigridError,
  DEFAULT_HEARTBEAT_MS,
  parseServerMessage,
  signedHello,
  type Accusation,
  type ErrorCode,
  type Identity,
  type Servers,
  type Sources,
  type Capabilities,
  type Block,
  type Vdag,
  type PolicyRecord,
  type ClientMessage,
  type Hop,
  type RouteTicket,
  type ModelCoverage,
  type PeerInfo,
  type ServerMessage,
  type SignalData,
} from '../../protocol/index.ts';
import { SOCKET_OPEN, type SocketConstructor, type SocketLike } from './platform.ts';

type Welcome = Extract<ServerMessage, { type: 'welcome' }>;
type Assign = Extract<ServerMessage, { type: 'assign' }>;
type RouteReply = Extract<ServerMessage, { type: 'route' }>;
export type Judged = Extract<ServerMessage, { type: 'judged' }>;
type Policy = Extract<ServerMessage, { type: 'policy' }>;

export interface RouteQuery {
  /** Layers the route must cover (default: the whole model). */
  start?: number;
  end?: number;
  /** Peers the route must avoid. */
  exclude?: string[];
  /** Round trips measured to peers, in ms (at most 64, each 0..60000); the coordinator prefers fast peers. */
  latencyMs?: Record<string, number>;
  /** A spot-check's route: `around` with peer `replace` swapped for others. */
  around?: Hop[];
  replace?: string;
  timeoutMs?: number;
}

const DEFAULT_ROUTE_TIMEOUT_MS = 10_000;
/** Assignments held for a listener to come (a network serves at most a few dozen models). */
const MAX_HELD_ASSIGNMENTS = 64;

export interface SignalingClientOptions {
  url: string;
  /**
   * Several signaling URLs of one deployment (processes sharing a Redis): the client starts on
   * `url` (or the first) and moves to the next whenever its connection closes.
   */
  urls?: readonly string[];
  network: string;
  /** Who joins: hello signs the server's challenge with this key. */
  identity: Identity;
  capabilities: Capabilities;
  WebSocket: SocketConstructor;
  /** First reconnect delay; doubles per failed try up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
}

export type SignalingState = 'connecting' | 'open' | 'closed';

export interface SignalingClientEvents {
  welcome: [welcome: Welcome];
  join: [peer: PeerInfo];
  update: [peer: PeerInfo];
  leave: [peerId: string, reason: string];
  signal: [from: string, data: SignalData];
  decline: [from: string, reason: string];
  glare: [peerId: string];
  /** Fresh ICE servers (renewed TURN credentials) for the links opened from now on. */
  ice: [ice: Extract<ServerMessage, { type: 'ice' }>];
  /** An error the server reported, or a frame from it that failed validation. */
  serverError: [error: AigridError];
  /** The server refused this identity or another connection took it over: no more reconnects. */
  fatal: [error: AigridError];
  state: [state: SignalingState];
  /** The coordinator asks this peer to serve layers [start, end) of a model. */
  assign: [assignment: Assign];
  unassign: [modelId: string];
  routeReply: [reply: RouteReply];
  models: [models: ModelCoverage[]];
  /** Every valid message from the server, before its own event. */
  message: [message: ServerMessage];
}

/** Errors after which reconnecting would only be refused again (or fight another holder of the key). */
const FATAL_CODES: ReadonlySet<ErrorCode> = new Set(['ERR_REPLACED', 'ERR_BAD_SIGNATURE', 'ERR_IDENTITY_MISMATCH', 'ERR_PROTOCOL_VERSION', 'ERR_ADMISSION_REFUSED']);

/** A route from the coordinator, with its ticket when the server signs routes. */
export interface Route {
  hops: Hop[];
  ticket?: RouteTicket;
  /** Hops with little verified work, which the client checks more often. */
  newcomers?: string[];
}

/** A registry request (blocks or vDAGs) as the client asks it; the server answers the records concerned. */
export type BlocksAsk = Omit<Extract<ClientMessage, { type: 'blocks' }>, 'type' | 'requestId'>;
export type VdagsAsk = Omit<Extract<ClientMessage, { type: 'vdags' }>, 'type' | 'requestId'>;
export type PoliciesAsk = Omit<Extract<ClientMessage, { type: 'policies' }>, 'type' | 'requestId'>;

interface RegistryWaiter {
  resolve: (records: unknown[]) => void;
  reject: (err: AigridError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface RouteWaiter {
  resolve: (route: Route) => void;
  reject: (err: AigridError) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class SignalingClient extends EventEmitter<SignalingClientEvents> {
  private socket: SocketLike | null = null;
  private state: SignalingState = 'closed';
  private stopped = false;
  private attempt = 0;
  /** The signaling URLs in turn, and which one is used now. */
  private readonly urls: readonly string[];
  private urlIndex = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private keepAliveTimer: ReturnType<typeof setInterval> | undefined;
  private lastHeard = 0;
  private heartbeatMs = DEFAULT_HEARTBEAT_MS;
  private nextPingId = 1;
  private pings = new Map<number, { start: number; resolve: (ms: number) => void }>();
  private nextRouteId = 1;
  private nextAccusationId = 1;
  private nextLookupId = 1;
  /** Route requests awaiting their reply, in the order they were sent. */
  private routes = new Map<number, RouteWaiter>();
  /** Registry requests waiting for their answer, by requestId (each ended by its timeout). */
  private registryAsks = new Map<number, RegistryWaiter>();
  /** The server's public key from its last welcome: it signs route tickets. */
  serverKey: string | undefined;
  /** The server's limits from its last welcome (messages per second it takes from this connection). */
  limits: Welcome['limits'] | undefined;
  /** The `models` ask in flight, shared by callers at the same time. */
  private listing: Promise<ModelCoverage[]> | null = null;
  capabilities: Capabilities;
  /**
   * Assignments that came before anyone listened, by model (a peer that restarts rejoins a server
   * that remembers its range and says so at once, before the peer's serving side is attached).
   * The serving side takes them when it starts listening (takeHeldAssignments); bounded.
   */
  private readonly heldAssignments = new Map<string, Assign>();

  constructor(private readonly options: SignalingClientOptions) {
    super();
    this.capabilities = options.capabilities;
    this.urls = options.urls?.length ? options.urls : [options.url];
    this.urlIndex = Math.max(0, this.urls.indexOf(options.url));
  }

  /** The assignments that came while nobody listened for 'assign', in arrival order (once). */
  takeHeldAssignments(): Assign[] {
    const held = [...this.heldAssignments.values()];
    this.heldAssignments.clear();
    return held;
  }

  private hold(msg: Assign): void {
    this.heldAssignments.delete(msg.model.modelId);
    this.heldAssignments.set(msg.model.modelId, msg);
    if (this.heldAssignments.size > MAX_HELD_ASSIGNMENTS) this.heldAssignments.delete(this.heldAssignments.keys().next().value!);
  }

  /** The signaling URL in use (or tried) now. */
  get url(): string {
    return this.urls[this.urlIndex]!;
  }

  get peerId(): string {
    return this.options.identity.peerId;
  }

  get connected(): boolean {
    return this.state === 'open';
  }

  /** Connects (and keeps reconnecting); resolves on the first welcome. */
  start(timeoutMs = 15_000): Promise<Welcome> {
    this.stopped = false;
    const first = new Promise<Welcome>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('welcome', onWelcome);
        reject(new AigridError('ERR_SIGNALING_TIMEOUT', `no welcome from ${this.urls.join(' or ')} in ${timeoutMs} ms`));
      }, timeoutMs);
      const onWelcome = (w: Welcome) => {
        clearTimeout(timer);
        this.off('fatal', onFatal);
        resolve(w);
      };
      const onFatal = (err: AigridError) => {
        clearTimeout(timer);
        this.off('welcome', onWelcome);
        reject(err);
      };
      this.once('welcome', onWelcome);
      this.once('fatal', onFatal);
    });
    this.open();
    return first;
  }

  send(message: ClientMessage): boolean {
    if (this.socket?.readyState !== SOCKET_OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  sendSignal(to: string, data: SignalData): boolean {
    return this.send({ type: 'signal', to, data });
  }

  updateCapabilities(capabilities: Capabilities): void {
    this.capabilities = capabilities;
    this.send({ type: 'update', capabilities });
  }

  /** One round trip to the server, in milliseconds. */
  ping(): Promise<number> {
    const id = this.nextPingId++;
    return new Promise((resolve, reject) => {
      this.pings.set(id, { start: performance.now(), resolve });
      if (!this.send({ type: 'ping', id })) {
        this.pings.delete(id);
        reject(new AigridError('ERR_SIGNALING_CLOSED', 'not connected to the signaling server'));
      }
    });
  }

  /**
   * Asks the coordinator for a chain of ready peers covering the model. Rejects with the server's
   * error (ERR_NO_ROUTE), ERR_SIGNALING_TIMEOUT, or ERR_SIGNALING_CLOSED when the socket drops.
   */
  requestRoute(modelId: string, query: RouteQuery = {}): Promise<Route> {
    const requestId = this.nextRouteId++;
    const { timeoutMs = DEFAULT_ROUTE_TIMEOUT_MS, ...range } = query;
    return new Promise<Route>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.routes.delete(requestId);
        reject(new AigridError('ERR_SIGNALING_TIMEOUT', `no route for ${modelId} from the server in ${timeoutMs} ms`));
      }, timeoutMs);
      this.routes.set(requestId, { resolve, reject, timer });
      if (!this.send({ type: 'route', requestId, modelId, ...range })) {
        this.settleRoute(requestId, new AigridError('ERR_SIGNALING_CLOSED', 'not connected to the signaling server'));
      }
    });
  }

  /** Asks the network's block registry (create, update, delete, get, list): the blocks concerned, or the server's named error. */
  requestBlocks(ask: BlocksAsk, timeoutMs = DEFAULT_ROUTE_TIMEOUT_MS): Promise<Block[]> {
    return this.askRegistry('blocks', ask, timeoutMs) as Promise<Block[]>;
  }

  /** Asks the network's vDAG registry, as requestBlocks. */
  requestVdags(ask: VdagsAsk, timeoutMs = DEFAULT_ROUTE_TIMEOUT_MS): Promise<Vdag[]> {
    return this.askRegistry('vdags', ask, timeoutMs) as Promise<Vdag[]>;
  }

  /** Asks the network's policy registry, as requestBlocks. */
  requestPolicies(ask: PoliciesAsk, timeoutMs = DEFAULT_ROUTE_TIMEOUT_MS): Promise<PolicyRecord[]> {
    return this.askRegistry('policies', ask, timeoutMs) as Promise<PolicyRecord[]>;
  }

  private askRegistry(type: 'blocks' | 'vdags' | 'policies', ask: BlocksAsk | VdagsAsk | PoliciesAsk, timeoutMs: number): Promise<unknown[]> {
    const requestId = this.nextRouteId++;
    return new Promise<unknown[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.registryAsks.delete(requestId);
        reject(new AigridError('ERR_SIGNALING_TIMEOUT', `no answer to ${type} ${ask.op} from the server in ${timeoutMs} ms`));
      }, timeoutMs);
      this.registryAsks.set(requestId, { resolve, reject, timer });
      if (!this.send({ type, requestId, ...ask } as ClientMessage)) {
        this.settleRegistry(requestId, new AigridError('ERR_SIGNALING_CLOSED', 'not connected to the signaling server'));
      }
    });
  }

  /** The models the network serves now, with their coverage (asked of the server; callers at the same time share one ask). */
  listModels(timeoutMs = DEFAULT_ROUTE_TIMEOUT_MS): Promise<ModelCoverage[]> {
    if (this.listing) return this.listing;
    const listing = this.askModels(timeoutMs);
    this.listing = listing;
    const clear = () => {
      if (this.listing === listing) this.listing = null;
    };
    listing.then(clear, clear);
    return listing;
  }

  private askModels(timeoutMs: number): Promise<ModelCoverage[]> {
    return this.ask({ type: 'models' }, (m) => (m.type === 'models' ? m.models : undefined), 'model list', timeoutMs);
  }

  /** Stops serving a model on the network (its server or the network's owner may); resolves with the models left. */
  withdraw(modelId: string, timeoutMs = DEFAULT_ROUTE_TIMEOUT_MS): Promise<ModelCoverage[]> {
    const gone = (m: ServerMessage) => (m.type === 'models' && !m.models.some((c) => c.model.modelId === modelId) ? m.models : undefined);
    return this.ask({ type: 'withdraw', modelId }, gone, `withdrawal of ${modelId}`, timeoutMs);
  }

  /** Sets who may serve new models on the network and from where (its owner only); resolves with the rules now. */
  setPolicy(policy: { servers?: Servers; sources?: Sources }, timeoutMs = DEFAULT_ROUTE_TIMEOUT_MS): Promise<Policy> {
    return this.ask({ type: 'policy', ...policy }, (m) => (m.type === 'policy' ? m : undefined), 'policy answer', timeoutMs);
  }

  /**
   * The directory entries of these peers (at most MAX_LOOKUP_PEERS), from the server: those in the
   * network. A large network's welcome lists nobody; its members look up the peers they need.
   */
  lookup(peerIds: readonly string[], timeoutMs = DEFAULT_ROUTE_TIMEOUT_MS): Promise<PeerInfo[]> {
    const id = this.nextLookupId++;
    return this.ask({ type: 'lookup', id, peerIds: [...peerIds] }, (m) => (m.type === 'peers' && m.id === id ? m.peers : undefined), 'peer lookup', timeoutMs);
  }

  /** Sends an accusation's evidence to the coordinator; resolves with its judgement. */
  accuse(accusation: Accusation, timeoutMs = DEFAULT_ROUTE_TIMEOUT_MS): Promise<Judged> {
    const id = this.nextAccusationId++;
    return this.ask({ type: 'accuse', id, ...accusation }, (m) => (m.type === 'judged' && m.id === id ? m : undefined), 'judgement', timeoutMs);
  }

  /**
   * Sends `message` and resolves with what `accept` makes of the first server message it takes;
   * rejects with the server's error about this message type, a timeout, or a closed connection.
   */
  private ask<T>(message: ClientMessage, accept: (m: ServerMessage) => T | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (err: AigridError | null, value?: T) => {
        clearTimeout(timer);
        this.off('message', onMessage);
        this.off('state', onState);
        if (err) reject(err);
        else resolve(value as T);
      };
      const onMessage = (m: ServerMessage) => {
        if (m.type === 'error' && m.ref === message.type) return done(AigridError.fromJSON({ name: 'AigridError', code: m.code, message: m.message }));
        const value = accept(m);
        if (value !== undefined) done(null, value);
      };
      const onState = (state: SignalingState) => {
        if (state !== 'open') done(new AigridError('ERR_SIGNALING_CLOSED', `the signaling connection closed while waiting for the ${what}`));
      };
      const timer = setTimeout(() => done(new AigridError('ERR_SIGNALING_TIMEOUT', `no ${what} from the server in ${timeoutMs} ms`)), timeoutMs);
      this.on('message', onMessage);
      this.on('state', onState);
      if (!this.send(message)) done(new AigridError('ERR_SIGNALING_CLOSED', 'not connected to the signaling server'));
    });
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.keepAliveTimer);
    this.socket?.close(1000, 'bye');
    this.socket = null;
    for (const id of [...this.routes.keys()]) this.settleRoute(id, new AigridError('ERR_SIGNALING_CLOSED', 'the signaling client was closed'));
    for (const id of [...this.registryAsks.keys()]) this.settleRegistry(id, new AigridError('ERR_SIGNALING_CLOSED', 'the signaling client was closed'));
    this.setState('closed');
  }

  private setState(state: SignalingState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }

  private open(): void {
    this.setState('connecting');
    let socket: SocketLike;
    try {
      socket = new this.options.WebSocket(this.url);
    } catch (err) {
      this.emit('serverError', new AigridError('ERR_SIGNALING_CLOSED', `cannot open ${this.url}: ${(err as Error).message}`));
      this.nextUrl();
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.lastHeard = Date.now();
    };
    socket.onmessage = (event) => {
      if (this.socket === socket) this.onMessage(event.data);
    };
    socket.onerror = () => {};
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearInterval(this.keepAliveTimer);
      // A reconnected server has no memory of the requests, so their replies never come.
      for (const id of [...this.routes.keys()]) {
        this.settleRoute(id, new AigridError('ERR_SIGNALING_CLOSED', 'the signaling connection closed before the route reply'));
      }
      for (const id of [...this.registryAsks.keys()]) {
        this.settleRegistry(id, new AigridError('ERR_SIGNALING_CLOSED', 'the signaling connection closed before the answer'));
      }
      this.setState(this.stopped ? 'closed' : 'connecting');
      // With several signaling processes, the next one is tried: this one may be gone.
      this.nextUrl();
      this.scheduleReconnect();
    };
  }

  private nextUrl(): void {
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const base = this.options.backoffMs ?? 250;
    const cap = this.options.maxBackoffMs ?? 10_000;
    const delay = Math.min(cap, base * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt++;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.open(), delay);
  }

  /** Pings the server each heartbeat; a server silent for three heartbeats is presumed dead. */
  private startKeepAlive(): void {
    clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > 3 * this.heartbeatMs) {
        this.socket?.close(4000, 'server silent');
        return;
      }
      this.ping().catch(() => {});
    }, this.heartbeatMs);
  }

  private onMessage(data: unknown): void {
    this.lastHeard = Date.now();
    const text = typeof data === 'string' ? data : data instanceof ArrayBuffer ? new Uint8Array(data) : String(data);
    const parsed = parseServerMessage(text);
    if (!parsed.ok) {
      this.emit('serverError', new AigridError(parsed.code, `from server: ${parsed.message}`));
      return;
    }
    const msg = parsed.message;
    this.emit('message', msg);
    switch (msg.type) {
      case 'challenge': {
        const socket = this.socket;
        signedHello(this.options.identity, msg.nonce, this.options.network, this.capabilities).then(
          (hello) => {
            if (this.socket === socket) this.send(hello);
          },
          (err: unknown) => this.emit('serverError', new AigridError('ERR_BAD_SIGNATURE', `could not sign the challenge: ${String(err)}`)),
        );
        break;
      }
      case 'welcome':
        this.attempt = 0;
        this.serverKey = msg.serverKey;
        this.limits = msg.limits;
        this.heartbeatMs = msg.heartbeatMs;
        this.setState('open');
        this.startKeepAlive();
        this.emit('welcome', msg);
        break;
      case 'join':
        this.emit('join', msg.peer);
        break;
      case 'update':
        this.emit('update', msg.peer);
        break;
      case 'leave':
        this.emit('leave', msg.peerId, msg.reason);
        break;
      case 'signal':
        this.emit('signal', msg.from, msg.data);
        break;
      case 'decline':
        this.emit('decline', msg.from, msg.reason);
        break;
      case 'glare':
        this.emit('glare', msg.peerId);
        break;
      case 'ice':
        this.emit('ice', msg);
        break;
      case 'pong': {
        const waiter = this.pings.get(msg.id);
        this.pings.delete(msg.id);
        waiter?.resolve(performance.now() - waiter.start);
        break;
      }
      case 'error': {
        const error = AigridError.fromJSON({ name: 'AigridError', code: msg.code, message: msg.message });
        // A route request's error names it; any other error is the connection's.
        if (msg.ref === 'route' && msg.requestId !== undefined && this.routes.has(msg.requestId)) this.settleRoute(msg.requestId, error);
        else if ((msg.ref === 'blocks' || msg.ref === 'vdags' || msg.ref === 'policies') && msg.requestId !== undefined && this.registryAsks.has(msg.requestId)) this.settleRegistry(msg.requestId, error);
        else this.emit('serverError', error);
        if (FATAL_CODES.has(error.code)) {
          this.stopped = true;
          clearTimeout(this.reconnectTimer);
          this.emit('fatal', error);
        }
        break;
      }
      case 'assign':
        if (this.listenerCount('assign') > 0) this.emit('assign', msg);
        else this.hold(msg);
        break;
      case 'unassign':
        this.heldAssignments.delete(msg.modelId);
        this.emit('unassign', msg.modelId);
        break;
      case 'route':
        this.emit('routeReply', msg);
        this.settleRoute(msg.requestId, { hops: msg.hops, ...(msg.ticket ? { ticket: msg.ticket } : {}), ...(msg.newcomers ? { newcomers: msg.newcomers } : {}) });
        break;
      case 'models':
        this.emit('models', msg.models);
        break;
      case 'blocks':
        this.settleRegistry(msg.requestId, msg.blocks);
        break;
      case 'vdags':
        this.settleRegistry(msg.requestId, msg.vdags);
        break;
      case 'policies':
        this.settleRegistry(msg.requestId, msg.policies);
        break;
    }
  }

  private settleRegistry(requestId: number, result: unknown[] | AigridError): void {
    const waiter = this.registryAsks.get(requestId);
    if (!waiter) return;
    this.registryAsks.delete(requestId);
    clearTimeout(waiter.timer);
    if (result instanceof AigridError) waiter.reject(result);
    else waiter.resolve(result);
  }

  private settleRoute(requestId: number, result: Route | AigridError): void {
    const waiter = this.routes.get(requestId);
    if (!waiter) return;
    this.routes.delete(requestId);
    clearTimeout(waiter.timer);
    if (result instanceof AigridError) waiter.reject(result);
    else waiter.resolve(result);
  }
}
