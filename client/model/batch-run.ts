// One pass of a continuous batcher (a peer's decode steps, a client's head) with the fallback both
// need: when the batched pass fails, each item runs alone, so it gets its own answer and only a bad
// item fails.

export interface Pending<R> {
  resolve: (value: R) => void;
  reject: (err: unknown) => void;
}

/**
 * Runs `items` as one pass (`whole` answers them in order), else one pass each (`single`).
 * `count(rows)` hears every pass that ran. Resolves with the batched pass's duration in ms, or null
 * when it failed and the items ran alone.
 */
export async function runBatch<T extends Pending<R>, R>(
  items: readonly T[],
  whole: (items: readonly T[]) => Promise<R[]>,
  single: (item: T) => Promise<R>,
  count: (rows: number) => void,
): Promise<number | null> {
  const started = performance.now();
  try {
    const outs = await whole(items);
    const ms = performance.now() - started;
    count(items.length);
    items.forEach((item, i) => item.resolve(outs[i]!));
    return ms;
  } catch {
    for (const item of items) {
      try {
        item.resolve(await single(item));
        count(1);
      } catch (err) {
        item.reject(err);
      }
    }
    return null;
  }
}
