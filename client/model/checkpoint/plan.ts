// Which byte ranges to download for a set of tensors: one read per run of tensors that touch in a
// file, so a layer's tensors usually arrive in one request, and never a byte of a tensor not asked for.
/** Where one tensor's bytes lie in its file: [begin, end). */
export interface ByteRange {
  name: string;
  begin: number;
  end: number;
}

export interface PlannedRead {
  file: string;
  begin: number;
  end: number;
  /** The tensors the range holds, in file order; with the gaps between them they cover [begin, end). */
  tensors: ByteRange[];
}

/** Reads larger than this are split at tensor boundaries, so several can run at once. */
export const DEFAULT_MAX_READ_BYTES = 64 * 1024 * 1024;

/** `maxGap`: bytes between two tensors that one read may carry across (0: only tensors that touch). */
export function planReads(
  wanted: Iterable<{ file: string; entry: ByteRange }>,
  maxReadBytes = DEFAULT_MAX_READ_BYTES,
  maxGap = 0,
): PlannedRead[] {
  const byFile = new Map<string, Map<string, ByteRange>>();
  for (const { file, entry } of wanted) {
    let entries = byFile.get(file);
    if (!entries) byFile.set(file, (entries = new Map()));
    entries.set(entry.name, entry);
  }
  const reads: PlannedRead[] = [];
  for (const [file, entries] of byFile) {
    const sorted = [...entries.values()].sort((a, b) => a.begin - b.begin);
    let current: PlannedRead | undefined;
    for (const entry of sorted) {
      const fits = current && entry.begin >= current.end && entry.begin - current.end <= maxGap && entry.end - current.begin <= maxReadBytes;
      if (current && fits) {
        current.end = entry.end;
        current.tensors.push(entry);
      } else {
        current = { file, begin: entry.begin, end: entry.end, tensors: [entry] };
        reads.push(current);
      }
    }
  }
  return reads;
}

/**
 * Runs `work` over the items, at most `limit` at a time. The first failure aborts `stop` (so the
 * work in flight can give up) and is the error thrown once everything has settled.
 */
export async function runLimited<T>(items: T[], limit: number, stop: AbortController, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !failure && !stop.signal.aborted) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
        stop.abort(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
  stop.signal.throwIfAborted();
}
