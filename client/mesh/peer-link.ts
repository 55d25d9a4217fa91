// One WebRTC connection to one remote peer: simple-peer underneath, binary frames on top, with
// chunking to the channel's message size and backpressure on its bufferedAmount. Frames sent in one
// synchronous run leave as one packed message where they fit (a channel send, and in Node even a
// bufferedAmount read, is a blocking call into the WebRTC thread, costing far more than its bytes),
// and bufferedAmount is read only when the bytes sent since the last read could pass the high mark.
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
  packFrames,
  type Frame,
  type SignalData,
} from '../../protocol/index.ts';
import type { WrtcImplementation } from './platform.ts';

export interface PeerLinkOptions {
  remoteId: string;
  initiator: boolean;
  wrtc?: WrtcImplementation;
  /** ICE servers; none by default, so no outside host is ever contacted. */
  iceServers?: RTCIceServer[];
  /** 'relay': only TURN relay candidates; a link that gathers none fails at once (ERR_CONNECTION_FAILED). */
  iceTransportPolicy?: RTCIceTransportPolicy;
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
  /** Queued as one chunk, so the whole frame (packable). */
  whole: boolean;
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
  private pumpQueued = false;
  /** bufferedAmount when last read plus the bytes sent since: never below the real amount. */
  private bufferedAtMost = 0;
  private nextFrameId = 1;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private pings = new Map<number, { start: number; resolve: (ms: number) => void; reject: (err: AigridError) => void }>();
  private _open = false;
  private _opened = false;
  private answered = false;
  private _closed = false;
  private relayGathered = false;
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
      config: { iceServers: options.iceServers ?? [], ...(options.iceTransportPolicy ? { iceTransportPolicy: options.iceTransportPolicy } : {}) },
      channelConfig: { ordered: true },
    });
    this.peer.on('signal', (data) => {
      if (data.type === 'candidate' && / typ relay( |$)/.test(data.candidate?.candidate ?? '')) this.relayGathered = true;
      this.emit('signal', data as SignalData);
    });
    if (options.iceTransportPolicy === 'relay') {
      // Gathering ended without a relay candidate: the TURN server refused the credentials
      // (expired, or minted with another secret) or did not answer, and nothing else may be used.
      this.peer.once('_iceComplete', () => {
        if (this.relayGathered || this._open) return;
        this.destroy(new AigridError('ERR_CONNECTION_FAILED', `no relay candidate for the link to ${this.remoteId}: ICE is relay-only and the TURN server refused the credentials or did not answer`));
      });
    }
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

  /**
   * The candidate types of the pair the link selected ('host', 'srflx', 'prflx' or 'relay' on
   * each side), from the connection's stats; undefined before a pair is selected.
   */
  async candidateTypes(): Promise<{ local: string; remote: string } | undefined> {
    const pc = (this.peer as unknown as { _pc?: RTCPeerConnection })._pc;
    if (!pc || this._closed) return undefined;
    const stats: { type: string; id: string; [k: string]: unknown }[] = [];
    (await pc.getStats()).forEach((s: { type: string; id: string }) => stats.push(s));
    const byId = new Map(stats.map((s) => [s.id, s]));
    const transport = stats.find((s) => s.type === 'transport' && typeof s.selectedCandidatePairId === 'string');
    const pair =
      (transport && byId.get(transport.selectedCandidatePairId as string)) ??
      stats.find((s) => s.type === 'candidate-pair' && s.state === 'succeeded' && (s.nominated || s.selected));
    if (!pair) return undefined;
    const local = byId.get(pair.localCandidateId as string)?.candidateType;
    const remote = byId.get(pair.remoteCandidateId as string)?.candidateType;
    return typeof local === 'string' && typeof remote === 'string' ? { local, remote } : undefined;
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
      this.queue.push({ chunks, whole: chunks.length === 1, resolve, reject });
      if (this._open) this.pumpSoon();
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
    // Frames before a bad part of a packed message still count; the error is reported after them.
    const frames: Frame[] = [];
    let error: AigridError | undefined;
    try {
      this.reassembler.pushMessage(chunk, (frame) => frames.push(frame));
    } catch (err) {
      error = err as AigridError;
    }
    for (const frame of frames) this.deliver(frame);
    if (error) this.emit('frameError', error);
  }

  private deliver(frame: Frame): void {
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

  /** Pumps on the next microtask, so that the frames sent in this synchronous run can be packed. */
  private pumpSoon(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    queueMicrotask(() => {
      this.pumpQueued = false;
      void this.pump();
    });
  }

  /** Waits until the channel buffers at most the high mark (reading it only when it might not). */
  private async room(): Promise<void> {
    while (this.bufferedAtMost > SEND_HIGH_WATER_BYTES && !this._closed) {
      this.bufferedAtMost = this.peer.bufferSize;
      if (this.bufferedAtMost > SEND_HIGH_WATER_BYTES) await this.drained();
    }
  }

  /** The queued frames from the head on that go as one message: several whole ones when they fit. */
  private nextMessage(): { frames: QueuedFrame[]; bytes: Uint8Array } {
    const head = this.queue[0]!;
    const frames = [head];
    if (head.whole) {
      let size = head.chunks[0]!.byteLength;
      for (let i = 1; i < this.queue.length; i++) {
        const next = this.queue[i]!;
        if (!next.whole || size + next.chunks[0]!.byteLength > this.chunkBytes) break;
        size += next.chunks[0]!.byteLength;
        frames.push(next);
      }
    }
    if (frames.length > 1) return { frames, bytes: packFrames(frames.map((f) => f.chunks[0]!)) };
    return { frames: head.chunks.length === 1 ? frames : [], bytes: head.chunks[0]! };
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this._closed) {
        await this.room();
        if (this._closed) break;
        // `done` holds the frames this message completes (none for a chunk that is not a frame's last).
        const { frames: done, bytes } = this.nextMessage();
        this.peer.send(bytes);
        this.bufferedAtMost += bytes.byteLength;
        if (done.length === 0) {
          this.queue[0]!.chunks.shift();
          continue;
        }
        this.queue.splice(0, done.length);
        for (const f of done) f.resolve();
      }
    } catch (err) {
      this.destroy(new AigridError('ERR_CONNECTION_FAILED', `send to ${this.remoteId} failed: ${(err as Error).message}`));
    } finally {
      this.pumping = false;
    }
  }
}
