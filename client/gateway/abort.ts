// Waiting on work that does not take an AbortSignal itself (opening a model's client reads its
// tokenizer and head, which no signal stops): the request stops waiting when its signal aborts,
// with the signal's reason, and what the work gives later goes to `discard`.

/** `work`, or a rejection with `signal.reason` as soon as the signal aborts, whichever comes first. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal, discard: (late: T) => void = () => {}): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let waiting = true;
    const onAbort = () => {
      waiting = false;
      reject(signal.reason);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (waiting) resolve(value);
        else discard(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        if (waiting) reject(err);
      },
    );
  });
}
