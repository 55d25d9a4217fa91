// How many generations the gateway runs at once, and how many more wait their turn. Past both, a
// request is refused at once with 429 and a Retry-After, so a burst is told to come back instead
// of piling up on the grid (where it would end in timeouts) or in memory here.
import { ApiError } from './errors.ts';

export interface AdmissionLimits {
  /** Requests generating at once. */
  maxConcurrent: number;
  /** Requests waiting for a turn, first come first served; more are refused 429. */
  maxQueued: number;
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

/** A request's run time assumed before any has finished, for the first Retry-After. */
const FIRST_GUESS_MS = 2_000;
/** Weight of the newest run time in the running average. */
const SMOOTHING = 0.2;
const MAX_RETRY_AFTER_S = 60;

export class Admission {
  private running = 0;
  /** Bounded by maxQueued: enter() refuses rather than grow it. */
  private readonly waiting: Waiter[] = [];
  private averageMs = FIRST_GUESS_MS;
  private closedWith: ApiError | null = null;

  constructor(private readonly limits: AdmissionLimits) {}

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Resolves with the function that ends the turn once the request may run; throws 429
   * (ERR_OVERLOADED) when the queue is full, and rejects with the signal's reason when it aborts
   * while waiting.
   */
  enter(signal: AbortSignal): Promise<() => void> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.running < this.limits.maxConcurrent && this.waiting.length === 0) return Promise.resolve(this.start());
    if (this.waiting.length >= this.limits.maxQueued) return Promise.reject(this.overloaded());
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          this.remove(waiter);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** Refuses what waits and what comes next with `error`; turns already running end as they do. */
  close(error: ApiError): void {
    this.closedWith ??= error;
    for (const waiter of this.waiting.splice(0)) {
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.reject(error);
    }
  }

  private start(): () => void {
    this.running++;
    const began = performance.now();
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.running--;
      this.averageMs += SMOOTHING * (performance.now() - began - this.averageMs);
      this.next();
    };
  }

  private next(): void {
    while (this.running < this.limits.maxConcurrent && this.waiting.length > 0) {
      const waiter = this.waiting.shift()!;
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.resolve(this.start());
    }
  }

  private remove(waiter: Waiter): void {
    const at = this.waiting.indexOf(waiter);
    if (at >= 0) this.waiting.splice(at, 1);
  }

  /** 429 with a Retry-After of about the time the queue ahead needs to clear at the recent pace. */
  private overloaded(): ApiError {
    const turns = (this.waiting.length + 1) / this.limits.maxConcurrent;
    const seconds = Math.min(MAX_RETRY_AFTER_S, Math.max(1, Math.ceil((turns * this.averageMs) / 1000)));
    return new ApiError(
      429,
      `The gateway is at its limit (${this.running} requests running, ${this.waiting.length} waiting); retry in ${seconds} s.`,
      'ERR_OVERLOADED',
      null,
      { 'Retry-After': String(seconds) },
    );
  }
}
