// One WebSocket client as the server sees it: its identity once joined, its rate limit, its
// heartbeat state, and a queue that runs its messages strictly one after another (the registry
// is async, and a peer's messages must still take effect in the order it sent them).
import type { WebSocket } from 'ws';
import { ERROR_HINTS, TYPE_RATE_LIMITS, toBase64Url, type ErrorCode, type LeaveReason, type PeerInfo, type ServerMessage } from '../protocol/index.ts';
import { TokenBucket } from './rate-limit.ts';

/** A client that sends but never reads would make the server buffer for it without end. */
export const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
/** How long a socket over its message rate goes unread. */
const THROTTLE_MS = 250;
const CLOSE_GRACE_MS = 2_000;

export class Connection {
  /** Set once hello succeeded; cleared when the peer is detached (left or replaced). */
  peer: PeerInfo | null = null;
  network = '';
  /** Answered the last heartbeat ping. */
  alive = true;
  /** Why the peer leaves when its socket closes; the heartbeat and replacement change it. */
  leaveReason: LeaveReason = 'closed';
  closed = false;
  readonly openedAt = Date.now();
  /** This socket's challenge: hello signs it, so a hello seen elsewhere cannot be replayed here. */
  readonly nonce = toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  private readonly bucket: TokenBucket;
  private lastRateError = -Infinity;
  /** When this connection's last `models` answer went out, and whether one is scheduled. */
  modelsAnsweredAt = -Infinity;
  modelsAnswerDue = false;
  /** When the peer is next sent fresh TURN credentials (hub.ts renewIce). */
  iceRenewal: ReturnType<typeof setTimeout> | undefined;
  /** Buckets of the costly message types (TYPE_RATE_LIMITS), made on first use. */
  private readonly typeBuckets = new Map<string, { bucket: TokenBucket; lastError: number }>();
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly ws: WebSocket,
    readonly ip: string,
    messagesPerSecond: number,
    private readonly log: (line: string) => void,
  ) {
    this.bucket = new TokenBucket(messagesPerSecond);
  }

  get label(): string {
    return this.peer ? `${this.network}/${this.peer.peerId}` : `${this.ip} (not joined)`;
  }

  /**
   * False when the message must be dropped; tells the client at most once a second. A socket over
   * its rate is also not read for a while: what it sends waits in its own TCP buffers, so a flood
   * costs the server little and cannot crowd out the other sockets.
   */
  admit(): boolean {
    if (this.bucket.take()) return true;
    this.throttle();
    const now = performance.now();
    if (now - this.lastRateError >= 1000) {
      this.lastRateError = now;
      this.error('ERR_RATE_LIMITED');
    }
    return false;
  }

  /**
   * False when a message of a costly type must be dropped (its own bucket is empty); tells the
   * client at most once a second per type, naming the request when it has an id.
   */
  admitType(type: string, requestId?: number): boolean {
    const limit = (TYPE_RATE_LIMITS as Record<string, readonly [number, number]>)[type];
    if (!limit) return true;
    let entry = this.typeBuckets.get(type);
    if (!entry) this.typeBuckets.set(type, (entry = { bucket: new TokenBucket(limit[0], limit[1]), lastError: -Infinity }));
    if (entry.bucket.take()) return true;
    const now = performance.now();
    // A route request always hears back, so its asker does not wait out a timeout.
    if (requestId !== undefined || now - entry.lastError >= 1000) {
      entry.lastError = now;
      this.error('ERR_RATE_LIMITED', `more than ${limit[0]} ${type} messages per second`, type, requestId);
    }
    return false;
  }

  private throttle(): void {
    if (this.ws.isPaused || this.closed) return;
    this.ws.pause();
    // Short next to any heartbeat, so a peer merely bursting is not taken for dead.
    setTimeout(() => {
      if (!this.closed) this.ws.resume();
    }, THROTTLE_MS).unref?.();
  }

  /** Runs tasks in arrival order; a failing task is logged and the next one still runs. */
  enqueue(task: () => Promise<void> | void): void {
    this.queue = this.queue.then(task).catch((err: unknown) => {
      this.log(`handler error for ${this.label}: ${(err as Error)?.stack ?? String(err)}`);
    });
  }

  get open(): boolean {
    return !this.closed && this.ws.readyState === this.ws.OPEN;
  }

  send(message: ServerMessage): void {
    this.sendText(JSON.stringify(message));
  }

  /** Broadcasts serialize once and send the same text to every member. */
  sendText(text: string): void {
    if (!this.open) return;
    this.ws.send(text);
    if (this.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.log(`${this.label} does not read (${this.ws.bufferedAmount} bytes buffered); dropping it`);
      this.terminate('timeout');
    }
  }

  error(code: ErrorCode, message: string = ERROR_HINTS[code], ref?: string, requestId?: number): void {
    this.send({ type: 'error', code, message, ...(ref === undefined ? {} : { ref }), ...(requestId === undefined ? {} : { requestId }) });
  }

  /** Sends the close frame after whatever is already queued (e.g. the error explaining why). */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.ws.close(code, reason);
    // ws waits 30 s for the close handshake; a client that ignores it should not hold a slot that long.
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  terminate(reason: LeaveReason): void {
    if (this.closed) return;
    this.leaveReason = reason;
    this.closed = true;
    this.ws.terminate();
  }
}
