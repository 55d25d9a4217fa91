// One WebRTC connection to one remote peer: simple-peer underneath, binary frames on top, with
// chunking to the channel's message size and backpressure on its bufferedAmount.
import './browser-globals.ts';
import SimplePeer from 'simple-peer';
import { EventEmitter } from 'events';
import {
  AigridError,
  DEFAULT_CHUNK_BYTES,
  DEFAULT_MAX_FRAME_BYTES,
  FrameReassembler,
  FrameType,
  MAX_CHUNK_BYTES,
  SEND_HIGH_WATER_BYTES,
  SEND_LOW_WATER_BYTES,
  encodeFrame,
  type Frame,
  type SignalData,
} from '../protocol/index.ts';
import type { WrtcImplementation } from './platform.ts';

export interface PeerLinkOptions {
  remoteId: string;
  initiator: boolean;
  wrtc?: WrtcImplementation;
  /** ICE servers; none by default, so no outside host is ever contacted. */
  iceServers?: RTCIceServer[];
  connectTimeoutMs?: number;
  maxFrameBytes?: number;
}

export interface PeerLinkEvents {
  signal: [data: SignalData];
  open: [];
  frame: [frame: Frame];
  /** A frame from the remote was refused; the link stays up. */
  frameError: [error: AigridError];
  close: [error: AigridError | null];
}

/** The parts of RTCDataChannel we read; simple-peer keeps it private. */
interface ChannelLike {
  bufferedAmount: number;
  bufferedAmountLowThreshold?: number;
  addEventListener?(type: 'bufferedamountlow', fn: () => void): void;
  removeEventListener?(type: 'bufferedamountlow', fn: () => void): void;
}

interface QueuedFrame {
  chunks: Uint8Array[];
  resolve: () => void;
  reject: (err: AigridError) => void;
}

export class PeerLink extends EventEmitter<PeerLinkEvents> {
  readonly remoteId: string;
  readonly initiator: boolean;
  private readonly peer: SimplePeer.Instance;
  private readonly reassembler: FrameReassembler;
  private readonly queue: QueuedFrame[] = [];
  private pumping = false;
  private nextFrameId = 1;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private pings = new Map<number, { start: number; resolve: (ms: number) => void; reject: (err: AigridError) => void }>();
  private _open = false;
  private _opened = false;
  private answered = false;
  private _closed = false;
  /** Bytes per channel message: the negotiated max message size, capped (see limits.ts). */
  chunkBytes = DEFAULT_CHUNK_BYTES;

  constructor(options: PeerLinkOptions) {
    super();
    this.remoteId = options.remoteId;
    this.initiator = options.initiator;
    this.reassembler = new FrameReassembler(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
    this.peer = new SimplePeer({
      initiator: options.initiator,
      trickle: true,
      wrtc: options.wrtc as SimplePeer.Options['wrtc'],
      config: { iceServers: options.iceServers ?? [] },
      channelConfig: { ordered: true },
    });
    this.peer.on('signal', (data) => this.emit('signal', data as SignalData));
    this.peer.on('connect', () => this.onConnect());
    this.peer.on('data', (chunk: Uint8Array) => this.onChunk(chunk));
    this.peer.on('error', (err: Error & { code?: string }) =>
      this.destroy(new AigridError('ERR_CONNECTION_FAILED', `${err.code ?? 'webrtc'}: ${err.message}`, { cause: err })),
    );
    this.peer.on('close', () => this.destroy(new AigridError('ERR_PEER_CLOSED', `connection to ${this.remoteId} closed`)));
    const timeout = options.connectTimeoutMs ?? 20_000;
    this.connectTimer = setTimeout(
      () => this.destroy(new AigridError('ERR_CONNECT_TIMEOUT', `no connection to ${this.remoteId} after ${timeout} ms`)),
      timeout,
    );
  }

  get open(): boolean {
    return this._open;
  }

  /** True once the link has been open, even after it closed. */
  get wasOpened(): boolean {
    return this._opened;
  }

  get closed(): boolean {
    return this._closed;
  }

  /** Bytes queued in the data channel, not yet sent. */
  get bufferedAmount(): number {
    return this.peer.bufferSize;
  }

  /** Feeds signaling data from the remote peer (offer, answer, candidates). */
  signal(data: SignalData): void {
    if (this._closed) return;
    // An initiator hears candidates only after the answer; earlier ones belong to the remote's
    // abandoned offer from a glare and would poison this connection.
    if (this.initiator && !this.answered && data.type === 'candidate') return;
    if (data.type === 'answer') this.answered = true;
    try {
      this.peer.signal(data as SimplePeer.SignalData);
    } catch (err) {
      this.destroy(new AigridError('ERR_CONNECTION_FAILED', `bad signal from ${this.remoteId}: ${(err as Error).message}`));
    }
  }

  /**
   * Sends one frame of any size. Resolves when its last chunk is handed to the channel; frames
   * are sent whole and in call order. Waits while the channel buffers more than the high mark.
   */
  send(type: number, payload: Uint8Array): Promise<void> {
    if (this._closed) return Promise.reject(new AigridError('ERR_PEER_CLOSED', `link to ${this.remoteId} is closed`));
    const chunks = encodeFrame(type, this.nextFrameId++, payload, this.chunkBytes);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ chunks, resolve, reject });
      if (this._open) void this.pump();
    });
  }

  /** Measures one round trip over the data channel, in milliseconds. */
  async ping(): Promise<number> {
    const id = this.nextFrameId;
    const payload = new Uint8Array(4);
    new DataView(payload.buffer).setUint32(0, id, true);
    const done = new Promise<number>((resolve, reject) => this.pings.set(id, { start: performance.now(), resolve, reject }));
    await this.send(FrameType.ping, payload);
    return done;
  }

  /** The one way a link ends: rejects pending sends, closes the connection, emits close once. */
  destroy(error: AigridError | null = null): void {
    if (this._closed) return;
    this._closed = true;
    this._open = false;
    clearTimeout(this.connectTimer);
    const reason = error ?? new AigridError('ERR_PEER_CLOSED', `link to ${this.remoteId} was closed`);
    for (const queued of this.queue.splice(0)) queued.reject(reason);
    for (const waiter of this.pings.values()) waiter.reject(reason);
    this.pings.clear();
    this.peer.destroy();
    this.emit('close', error);
    this.removeAllListeners('frame');
  }

  private onConnect(): void {
    clearTimeout(this.connectTimer);
    const internals = this.peer as unknown as { _pc?: { sctp?: { maxMessageSize?: number } | null } };
    const max = internals._pc?.sctp?.maxMessageSize;
    if (typeof max === 'number' && Number.isFinite(max) && max > 1024) this.chunkBytes = Math.min(max, MAX_CHUNK_BYTES);
    this._open = true;
    this._opened = true;
    this.emit('open');
    void this.pump();
  }

  private onChunk(chunk: Uint8Array): void {
    let frame: Frame | null;
    try {
      frame = this.reassembler.push(chunk);
    } catch (err) {
      this.emit('frameError', err as AigridError);
      return;
    }
    if (!frame) return;
    if (frame.type === FrameType.ping) {
      this.send(FrameType.pong, frame.payload).catch(() => {});
    } else if (frame.type === FrameType.pong && frame.payload.byteLength === 4) {
      const id = new DataView(frame.payload.buffer, frame.payload.byteOffset, 4).getUint32(0, true);
      const waiter = this.pings.get(id);
      this.pings.delete(id);
      waiter?.resolve(performance.now() - waiter.start);
    } else {
      this.emit('frame', frame);
    }
  }

  private channel(): ChannelLike | undefined {
    return (this.peer as unknown as { _channel?: ChannelLike })._channel;
  }

  /** Resolves once the channel's buffer is below the low mark (event, or a short poll as fallback). */
  private drained(): Promise<void> {
    const channel = this.channel();
    if (!channel) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        clearTimeout(timer);
        channel.removeEventListener?.('bufferedamountlow', done);
        resolve();
      };
      const poll = () => {
        if (this._closed || channel.bufferedAmount <= SEND_LOW_WATER_BYTES) done();
        else timer = setTimeout(poll, 10);
      };
      channel.bufferedAmountLowThreshold = SEND_LOW_WATER_BYTES;
      channel.addEventListener?.('bufferedamountlow', done);
      timer = setTimeout(poll, 10);
    });
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this._closed) {
        const head = this.queue[0]!;
        while (head.chunks.length > 0 && !this._closed) {
          if (this.peer.bufferSize > SEND_HIGH_WATER_BYTES) {
            await this.drained();
            continue;
          }
          this.peer.send(head.chunks.shift()!);
        }
        if (this._closed) break;
        this.queue.shift();
        head.resolve();
      }
    } catch (err) {
      this.destroy(new AigridError('ERR_CONNECTION_FAILED', `send to ${this.remoteId} failed: ${(err as Error).message}`));
    } finally {
      this.pumping = false;
    }
  }
}
