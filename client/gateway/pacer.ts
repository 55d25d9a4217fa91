// Paces the gateway's generations below what the signaling server takes from its one connection.
// Each generation asks the coordinator for a route, and the server drops messages past its rate
// per connection (most of them silently, so the asker waits out a 10 s timeout) and refuses route
// asks past their own rate. Starting generations through a token bucket a good way below both
// makes a burst wait here, in order, instead of being dropped there.
import { DEFAULT_MESSAGES_PER_SECOND, TYPE_RATE_LIMITS } from '../../protocol/index.ts';

/** Share of the server's route rate the gateway uses: failovers and spot-checks ask routes too. */
const ROUTE_SHARE = 0.6;
/** Share of the connection's whole rate: link set-up (offers, ICE candidates), pings and verdicts need the rest. */
const CONNECTION_SHARE = 0.3;

/** Routes per second to start generations at, for a server that takes `messagesPerSecond` per connection. */
export function routeRate(messagesPerSecond: number = DEFAULT_MESSAGES_PER_SECOND): number {
  return Math.min(TYPE_RATE_LIMITS.route[0] * ROUTE_SHARE, messagesPerSecond * CONNECTION_SHARE);
}

interface Waiter {
  resolve: () => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

export class Pacer {
  private tokens: number;
  private last: number;
  /** Bounded by the admitted requests: only those take a token. */
  private readonly waiting: Waiter[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;

  /** `rate()` is read on every refill, so a server's new limits (after a reconnect) apply at once. */
  constructor(
    private readonly rate: () => number,
    private readonly burst: () => number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst();
    this.last = now();
  }

  /** Resolves when the caller may start; waiters go in arrival order. Rejects with the signal's reason on abort. */
  take(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    this.refill();
    if (this.waiting.length === 0 && this.tokens >= 1) {
      this.tokens -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const at = this.waiting.indexOf(waiter);
          if (at >= 0) this.waiting.splice(at, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiting.push(waiter);
      this.schedule();
    });
  }

  /** Stops the timer; whoever still waits is rejected with `error`. */
  close(error: unknown): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const waiter of this.waiting.splice(0)) {
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.reject(error);
    }
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst(), this.tokens + ((t - this.last) / 1000) * this.rate());
    this.last = t;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.waiting.length === 0) return;
    const waitMs = Math.max(1, Math.ceil(((1 - this.tokens) / this.rate()) * 1000));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refill();
      while (this.waiting.length > 0 && this.tokens >= 1) {
        this.tokens -= 1;
        const waiter = this.waiting.shift()!;
        waiter.signal.removeEventListener('abort', waiter.onAbort);
        waiter.resolve();
      }
      this.schedule();
    }, waitMs);
  }
}
