// GPU error scopes pushed and popped synchronously around recording and uploads. Popping within the
// same synchronous block keeps scopes balanced when passes of several callers interleave: a scope
// pushed by one call is never popped by another.
import { AigridError } from '../../../protocol/index.ts';

export interface OpenScope {
  /** Pops the scope now; resolves with the error it caught, as ERR_GPU_ERROR, or null. */
  close(): Promise<AigridError | null>;
}

export class ErrorScopes {
  private pending: Promise<AigridError | null>[] = [];

  constructor(private readonly device: GPUDevice) {}

  open(): OpenScope {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    let closed: Promise<AigridError | null> | undefined;
    return {
      close: () => {
        if (closed) return closed;
        const validation = this.device.popErrorScope();
        const memory = this.device.popErrorScope();
        closed = Promise.all([validation, memory]).then(
          ([v, m]) => (v ?? m ? new AigridError('ERR_GPU_ERROR', (v ?? m)!.message) : null),
          (err: unknown) => new AigridError('ERR_GPU_ERROR', `error scope: ${(err as Error).message}`, { cause: err }),
        );
        return closed;
      },
    };
  }

  /** Runs fn inside scopes; an error it caused on the GPU surfaces at the next settle(). */
  track<T>(fn: () => T): T {
    const scope = this.open();
    try {
      return fn();
    } finally {
      this.pending.push(scope.close());
    }
  }

  /** Throws the first GPU error of the work tracked since the last settle(). */
  async settle(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    const errors = await Promise.all(pending);
    const err = errors.find((e) => e !== null);
    if (err) throw err;
  }
}
