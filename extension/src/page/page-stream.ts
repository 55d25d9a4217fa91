// A streamed reply in the page: chunks arrive from the extension and wait in a queue until the
// page's loop takes them. Aborting (controller.abort(), the request's signal, or leaving the loop
// early) ends the stream at once with ERR_ABORTED and tells the engine to stop; chunks that were
// already on their way are dropped.
import { AigridError } from '../../../protocol/errors.ts';
import type { Stream } from '../../../client/sdk/types.ts';

export class PageStream<T> implements Stream<T> {
  readonly controller = new AbortController();
  private readonly queue: T[] = [];
  private failure: AigridError | null = null;
  private ended = false;
  private wake: (() => void) | null = null;

  /** `cancel` tells the engine to stop; it is called once, only when the stream had not ended. */
  constructor(private readonly cancel: () => void) {
    this.controller.signal.addEventListener('abort', () => this.abort(), { once: true });
  }

  get done(): boolean {
    return this.ended || this.failure !== null;
  }

  push(chunk: T): void {
    if (this.done) return;
    this.queue.push(chunk);
    this.notify();
  }

  end(): void {
    if (this.done) return;
    this.ended = true;
    this.notify();
  }

  fail(err: AigridError): void {
    if (this.done) return;
    this.failure = err;
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    try {
      for (;;) {
        while (this.queue.length > 0 && !this.failure) yield this.queue.shift()!;
        if (this.failure) throw this.failure;
        if (this.ended) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      if (!this.done) this.controller.abort();
    }
  }

  private abort(): void {
    if (this.done) return;
    this.fail(new AigridError('ERR_ABORTED', 'the request was aborted; the extension released its session on every peer'));
    this.cancel();
  }

  private notify(): void {
    this.wake?.();
    this.wake = null;
  }
}
