// A peer's place in one network: the directory the signaling server keeps us told of, and a
// bounded set of WebRTC links to other peers. Glare is settled by the same rule the server uses:
// when two offers cross, the smaller peerId's offer wins.
import { EventEmitter } from 'events';
import {
  AigridError,
  DEFAULT_IDLE_LINK_MS,
  DEFAULT_MAX_PEER_CONNECTIONS,
  type Capabilities,
  ephemeralIdentity,
  type Frame,
  type Identity,
  type PeerInfo,
  type ServerMessage,
  type SignalData,
} from '../../protocol/index.ts';
import { PeerLink } from './peer-link.ts';
import type { MeshPlatform, SocketConstructor } from './platform.ts';
import { SignalingClient, type SignalingState } from './signaling-client.ts';

export interface MeshOptions extends MeshPlatform {
  /**
   * Signaling server URL, e.g. ws://127.0.0.1:8787/signal; or several URLs of one deployment
   * (signaling processes sharing a Redis), used in turn: the next when the connection closes.
   */
  signal: string | readonly string[];
  network: string;
  capabilities: Capabilities;
  /** Who this peer is (its id derives from the key); a fresh ephemeral identity when not given. */
  identity?: Identity;
  /** Most WebRTC links this peer keeps (pending and open); offers beyond it are declined. */
  maxConnections?: number;
  /** Open links to peers already in the network when we join (up to maxConnections). */
  autoConnect?: boolean;
  connectTimeoutMs?: number;
  /**
   * ICE servers of this peer's own; they come before those the signaling server hands out in its
   * welcome (STUN/TURN with fresh credentials), and both are used.
   */
  iceServers?: RTCIceServer[];
  /** 'relay' makes every link go through TURN; the server's welcome can also ask for it. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  maxFrameBytes?: number;
  /**
   * Links that carried no frame for this long are closed (default 2 min); at the link cap, the
   * link idle longest makes room for a new one once it has been idle an eighth of that. So links
   * opened and left unused (a stranger's setups naming next hops) cannot hold the slots.
   */
  idleLinkMs?: number;
}

export interface MeshEvents {
  /** The directory changed (join, leave, update or a fresh welcome). */
  peers: [peers: PeerInfo[]];
  connection: [link: PeerLink];
  disconnect: [peerId: string, error: AigridError | null];
  frame: [peerId: string, frame: Frame];
  frameError: [peerId: string, error: AigridError];
  /** Problems that concern no single call (server-reported errors, failed background links);
   *  named 'warning' because an unheard EventEmitter 'error' would throw. */
  warning: [error: AigridError];
  state: [state: SignalingState];
}

type Waiter = { resolve: (link: PeerLink) => void; reject: (err: AigridError) => void };

/** Starts a mesh, closing it (so it does not keep reconnecting) when the start fails. */
export async function startMesh(mesh: Mesh): Promise<Mesh> {
  try {
    await mesh.start();
  } catch (err) {
    mesh.close();
    throw err;
  }
  return mesh;
}

export class Mesh extends EventEmitter<MeshEvents> {
  readonly peerId: string;
  readonly network: string;
  /** Who this peer is: it signs hellos and the receipts of the work it serves. */
  readonly identity: Identity;
  readonly signaling: SignalingClient;
  readonly maxConnections: number;
  private readonly directory = new Map<string, PeerInfo>();
  /** Lookups at the server in flight, one per peer id (bounded by the server's lookup rate). */
  private readonly lookups = new Map<string, Promise<PeerInfo[]>>();
  private readonly links = new Map<string, PeerLink>();
  private readonly waiters = new Map<string, Waiter[]>();
  /** When each link last carried a frame (either way). */
  private readonly lastActive = new Map<string, number>();
  /** Links something still needs (a session routed over them), however quiet: never closed as idle. */
  private readonly holds = new Map<string, number>();
  private readonly idleLinkMs: number;
  private readonly sweeper: ReturnType<typeof setInterval>;
  /** ICE servers and policy from the server's latest welcome (credentials renewed by each). */
  private serverIce: Pick<Extract<ServerMessage, { type: 'welcome' }>, 'iceServers' | 'iceTransportPolicy'> = {};
  private closed = false;

  constructor(private readonly options: MeshOptions) {
    super();
    const identity = (this.identity = options.identity ?? ephemeralIdentity());
    this.peerId = identity.peerId;
    this.network = options.network;
    this.maxConnections = options.maxConnections ?? DEFAULT_MAX_PEER_CONNECTIONS;
    this.idleLinkMs = options.idleLinkMs ?? DEFAULT_IDLE_LINK_MS;
    this.sweeper = setInterval(() => this.closeIdle(this.idleLinkMs), Math.max(50, this.idleLinkMs / 2));
    (this.sweeper as { unref?: () => void }).unref?.();
    const WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
    if (!WebSocketImpl) {
      throw new AigridError('ERR_INVALID_ARGUMENT', 'no WebSocket here: pass options.WebSocket (in Node, nodePlatform())');
    }
    this.signaling = new SignalingClient({
      url: typeof options.signal === 'string' ? options.signal : options.signal[0]!,
      ...(typeof options.signal === 'string' ? {} : { urls: options.signal }),
      network: options.network,
      identity,
      capabilities: options.capabilities,
      WebSocket: WebSocketImpl,
    });
    this.signaling.on('welcome', (w) => this.onWelcome(w));
    // Renewed TURN credentials: links opened from now on use them. A relayed link older than the
    // lifetime may lose its allocation; it fails like any link and is opened again on next use.
    this.signaling.on('ice', (ice) => (this.serverIce = { iceServers: ice.iceServers, iceTransportPolicy: ice.iceTransportPolicy }));
    this.signaling.on('join', (p) => this.setPeer(p));
    this.signaling.on('update', (p) => this.setPeer(p));
    this.signaling.on('leave', (id, reason) => this.onLeave(id, reason));
    this.signaling.on('signal', (from, data) => this.onSignal(from, data));
    this.signaling.on('glare', (id) => this.onGlare(id));
    this.signaling.on('decline', (from, reason) => this.onDecline(from, reason));
    this.signaling.on('serverError', (err) => this.emit('warning', err));
    this.signaling.on('state', (s) => this.emit('state', s));
  }

  /** Joins the network; resolves with the peers already there. */
  async start(timeoutMs?: number): Promise<PeerInfo[]> {
    try {
      await this.signaling.start(timeoutMs);
    } catch (err) {
      this.close();
      throw err;
    }
    return this.peers();
  }

  /** Everyone else in the network, as the signaling server last told us. */
  peers(): PeerInfo[] {
    return [...this.directory.values()];
  }

  /** Remote peer ids with an open link. */
  connectedPeers(): string[] {
    return [...this.links.values()].filter((l) => l.open).map((l) => l.remoteId);
  }

  link(peerId: string): PeerLink | undefined {
    return this.links.get(peerId);
  }

  /**
   * A new peer in the same network through the same server and platform, with its own identity
   * (ephemeral when not given) and the given capabilities (not started). A process serves layers
   * as such a sibling of its client.
   */
  sibling(capabilities: Capabilities, identity?: Identity): Mesh {
    return new Mesh({ ...this.options, identity, capabilities });
  }

  /**
   * Opens (or reuses) a link to a peer of the network. A peer not in the directory (a large
   * network's welcome lists nobody) is looked up at the server first.
   */
  connect(peerId: string): Promise<PeerLink> {
    if (this.closed) return Promise.reject(new AigridError('ERR_PEER_CLOSED', 'the mesh is closed'));
    const existing = this.links.get(peerId);
    if (existing?.open) return Promise.resolve(existing);
    if (!existing && !this.directory.has(peerId)) return this.lookUp(peerId).then(() => this.connect(peerId));
    const waiting = new Promise<PeerLink>((resolve, reject) => {
      const list = this.waiters.get(peerId) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(peerId, list);
    });
    if (!existing) {
      if (this.links.size >= this.maxConnections && !this.makeRoom()) {
        this.settle(peerId, new AigridError('ERR_FANOUT_LIMIT', `already ${this.links.size} links (max ${this.maxConnections})`));
      } else {
        this.createLink(peerId, true);
      }
    }
    return waiting;
  }

  /** Adds a peer to the directory from the server; ERR_UNKNOWN_TARGET when it is not in the network. */
  private async lookUp(peerId: string): Promise<void> {
    let pending = this.lookups.get(peerId);
    if (!pending) {
      pending = this.signaling.lookup([peerId]).finally(() => this.lookups.delete(peerId));
      this.lookups.set(peerId, pending);
    }
    const found = (await pending).find((p) => p.peerId === peerId);
    if (this.closed) throw new AigridError('ERR_PEER_CLOSED', 'the mesh is closed');
    if (!found) throw new AigridError('ERR_UNKNOWN_TARGET', `peer ${peerId} is not in network ${this.network}`);
    if (!this.directory.has(peerId)) this.setPeer(found);
  }

  /** Sends one frame to a connected peer (connecting first if needed). */
  async send(peerId: string, type: number, payload: Uint8Array): Promise<void> {
    const link = await this.connect(peerId);
    this.lastActive.set(peerId, performance.now());
    await link.send(type, payload);
  }

  /**
   * Marks the link to a peer as needed until the returned function is called (e.g. while a
   * session runs over it, whose frames may not pass on this very link); idle links are closed
   * only when nothing holds them.
   */
  hold(peerId: string): () => void {
    this.holds.set(peerId, (this.holds.get(peerId) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const n = (this.holds.get(peerId) ?? 1) - 1;
      if (n > 0) this.holds.set(peerId, n);
      else this.holds.delete(peerId);
      if (this.links.has(peerId)) this.lastActive.set(peerId, performance.now()); // idle from now, not from its last frame
    };
  }

  disconnect(peerId: string): void {
    this.links.get(peerId)?.destroy(null);
  }

  updateCapabilities(capabilities: Capabilities): void {
    this.signaling.updateCapabilities(capabilities);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const link of [...this.links.values()]) link.destroy(null);
    this.signaling.close();
  }

  private createLink(peerId: string, initiator: boolean): PeerLink {
    const link = new PeerLink({
      remoteId: peerId,
      initiator,
      wrtc: this.options.wrtc,
      iceServers: [...(this.options.iceServers ?? []), ...(this.serverIce.iceServers ?? [])],
      iceTransportPolicy: this.options.iceTransportPolicy === 'relay' || this.serverIce.iceTransportPolicy === 'relay' ? 'relay' : this.options.iceTransportPolicy,
      connectTimeoutMs: this.options.connectTimeoutMs,
      maxFrameBytes: this.options.maxFrameBytes,
    });
    this.links.set(peerId, link);
    link.on('signal', (data) => this.signaling.sendSignal(peerId, data));
    link.on('open', () => {
      this.lastActive.set(peerId, performance.now());
      this.emit('connection', link);
      this.settle(peerId, link);
    });
    link.on('frame', (frame) => {
      this.lastActive.set(peerId, performance.now());
      this.emit('frame', peerId, frame);
    });
    link.on('frameError', (err) => this.emit('frameError', peerId, err));
    link.on('close', (err) => {
      if (this.links.get(peerId) !== link) return; // dropped on purpose (glare, decline, leave, idle)
      this.links.delete(peerId);
      this.lastActive.delete(peerId);
      if (link.wasOpened) this.emit('disconnect', peerId, err);
      this.settle(peerId, err ?? new AigridError('ERR_PEER_CLOSED', `link to ${peerId} closed`));
    });
    return link;
  }

  /** At the cap: closes the open link idle longest if it has been idle an eighth of idleLinkMs. */
  private makeRoom(): boolean {
    return this.closeIdle(this.idleLinkMs / 8, true) > 0;
  }

  /** Closes open links idle for at least `ms` (only the longest idle one when `one`); how many it closed. */
  private closeIdle(ms: number, one = false): number {
    const now = performance.now();
    const since = (link: PeerLink) => this.lastActive.get(link.remoteId) ?? now;
    const idle = [...this.links.values()].filter((l) => l.open && !this.holds.has(l.remoteId) && now - since(l) >= ms).sort((a, b) => since(a) - since(b));
    const closing = one ? idle.slice(0, 1) : idle;
    for (const link of closing) {
      this.links.delete(link.remoteId);
      this.lastActive.delete(link.remoteId);
      link.destroy(null);
      this.emit('disconnect', link.remoteId, null);
    }
    return closing.length;
  }

  private settle(peerId: string, result: PeerLink | AigridError): void {
    const list = this.waiters.get(peerId);
    if (!list) return;
    this.waiters.delete(peerId);
    for (const w of list) result instanceof PeerLink ? w.resolve(result) : w.reject(result);
  }

  private setPeer(peer: PeerInfo): void {
    if (peer.peerId === this.peerId) return;
    this.directory.set(peer.peerId, peer);
    this.emit('peers', this.peers());
  }

  private onWelcome(welcome: Extract<ServerMessage, { type: 'welcome' }>): void {
    this.serverIce = { iceServers: welcome.iceServers, iceTransportPolicy: welcome.iceTransportPolicy };
    const present = new Set(welcome.peers.map((p) => p.peerId));
    // After a reconnect (a restarted server, say) the others may not be back yet: an open link
    // proves its peer alive, so it stays until it fails itself or the peer's leave is announced.
    for (const id of [...this.directory.keys()]) if (!present.has(id) && !this.links.get(id)?.open) this.onLeave(id, 'closed');
    for (const peer of welcome.peers) this.directory.set(peer.peerId, peer);
    this.emit('peers', this.peers());
    if (this.options.autoConnect === false) return;
    for (const peer of welcome.peers) {
      if (this.links.size >= this.maxConnections) break;
      if (this.links.has(peer.peerId)) continue;
      this.connect(peer.peerId).catch((err: AigridError) => this.emit('warning', err));
    }
  }

  private onLeave(peerId: string, reason: string): void {
    const known = this.directory.delete(peerId);
    const link = this.links.get(peerId);
    if (link) {
      this.links.delete(peerId);
      const error = new AigridError('ERR_PEER_CLOSED', `peer ${peerId} left the network (${reason})`);
      link.destroy(error);
      if (link.wasOpened) this.emit('disconnect', peerId, error);
    }
    this.settle(peerId, new AigridError('ERR_PEER_CLOSED', `peer ${peerId} left the network (${reason})`));
    if (known) this.emit('peers', this.peers());
  }

  private onSignal(from: string, data: SignalData): void {
    if (this.closed) return;
    let link = this.links.get(from);
    if (data.type === 'offer') {
      if (link?.initiator && !link.open) {
        if (this.peerId < from) return; // our offer wins; the server tells them
        this.dropForGlare(from, link);
        link = undefined;
      }
      if (!link) {
        if (this.links.size >= this.maxConnections && !this.makeRoom()) {
          this.signaling.send({ type: 'decline', to: from, reason: 'fan-out limit reached' });
          return;
        }
        link = this.createLink(from, false);
      }
    }
    link?.signal(data);
  }

  /** Our offer lost to theirs: drop our link quietly; their offer makes the replacement. */
  private onGlare(peerId: string): void {
    const link = this.links.get(peerId);
    if (link?.initiator && !link.open) this.dropForGlare(peerId, link);
  }

  private dropForGlare(peerId: string, link: PeerLink): void {
    this.links.delete(peerId);
    link.destroy(null);
  }

  private onDecline(from: string, reason: string): void {
    const link = this.links.get(from);
    if (link && !link.open) {
      this.links.delete(from);
      link.destroy(null);
    }
    this.settle(from, new AigridError('ERR_DECLINED', `peer ${from} declined: ${reason}`));
  }
}
