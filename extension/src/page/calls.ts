// The page's side of a call to the extension: numbered calls posted to the content script, their
// replies matched by id, streams fed chunk by chunk, tokens passed to onToken, and errors rebuilt
// as AigridErrors. An AbortSignal rejects the call at once and tells the engine to stop.
import { AigridError } from '../../../protocol/errors.ts';
import { fromWireError, type CallMessage, type PageMessage, type ProviderMethod, type ReplyMessage } from '../protocol.ts';
import { PageStream } from './page-stream.ts';

export interface CallOptions {
  signal?: AbortSignal | null;
  /** The reply is a stream of chunks: the call resolves with an async iterable. */
  stream?: boolean;
  onToken?: (token: number, step: number) => void;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: AigridError): void;
  onToken?: (token: number, step: number) => void;
  stream?: PageStream<unknown>;
  /** Detaches the abort listener. */
  release(): void;
}

const aborted = () => new AigridError('ERR_ABORTED', 'the request was aborted; the extension released its session on every peer');

export class Calls {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly post: (message: PageMessage) => void) {}

  call(method: ProviderMethod, params: unknown, options: CallOptions = {}): Promise<unknown> {
    const { signal, onToken } = options;
    if (signal?.aborted) return Promise.reject(new AigridError('ERR_ABORTED', 'the request was aborted before it started'));
    let body: unknown;
    try {
      body = params === undefined ? undefined : JSON.parse(JSON.stringify(params));
    } catch (err) {
      return Promise.reject(new AigridError('ERR_INVALID_ARGUMENT', `the request's fields must be plain JSON values: ${(err as Error).message}`));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const p = this.pending.get(id);
        if (!p) return;
        if (p.stream) return p.stream.controller.abort();
        this.settle(id);
        reject(aborted());
        this.post({ type: 'abort', id });
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const release = () => signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, { resolve, reject, onToken, release });
      const message: CallMessage = { type: 'call', id, method, ...(body === undefined ? {} : { params: body }), ...(onToken ? { tokens: true } : {}) };
      this.post(message);
    });
  }

  /** A reply from the extension. */
  receive(message: ReplyMessage): void {
    const p = this.pending.get(message.id);
    if (!p) return; // aborted here already, or not ours
    switch (message.type) {
      case 'result':
        if (message.stream) {
          p.stream = new PageStream<unknown>(() => {
            this.settle(message.id);
            this.post({ type: 'abort', id: message.id });
          });
          p.resolve(p.stream);
        } else {
          this.settle(message.id);
          p.resolve(message.value);
        }
        return;
      case 'chunk':
        p.stream?.push(message.chunk);
        return;
      case 'token':
        try {
          p.onToken?.(message.token, message.step);
        } catch (err) {
          queueMicrotask(() => {
            throw err; // the page's callback failed: report it as the page's own error, keep generating
          });
        }
        return;
      case 'end':
        this.settle(message.id);
        p.stream?.end();
        return;
      case 'error': {
        this.settle(message.id);
        const err = fromWireError(message.error);
        if (p.stream) p.stream.fail(err);
        else p.reject(err);
      }
    }
  }

  /** The extension went away (reloaded, updated or disabled): every open call fails. */
  disconnected(): void {
    const err = new AigridError('ERR_PEER_CLOSED', 'the AIGrid extension disconnected (it was reloaded, updated or disabled); call again');
    for (const [id, p] of [...this.pending]) {
      this.settle(id);
      if (p.stream) p.stream.fail(err);
      else p.reject(err);
    }
  }

  private settle(id: number): void {
    this.pending.get(id)?.release();
    this.pending.delete(id);
  }
}
