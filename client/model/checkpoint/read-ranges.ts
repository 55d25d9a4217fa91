// The bytes of a set of tensors, through the range cache: cached ranges first, then the rest in
// planned reads (runs of neighbouring tensors merged), with progress summed over all of them.
// Shared by the safetensors and GGUF readers, which differ only in where a tensor's bytes lie.
import type { CachedRanges } from './cached-ranges.ts';
import { planReads, runLimited, type ByteRange } from './plan.ts';

export interface ReadProgress {
  bytesDone: number;
  bytesTotal: number;
  /** The file the latest bytes came from. */
  file: string;
}

export interface ReadRangesOptions {
  onProgress?: (progress: ReadProgress) => void;
  signal?: AbortSignal;
  concurrency: number;
  maxReadBytes: number;
  /** Bytes between two tensors that a merged read may carry (GGUF pads tensors to its alignment). */
  maxGap?: number;
}

/** Tensor name -> its bytes; views into the buffers of merged reads. */
export async function readRanges(ranges: CachedRanges, entries: { file: string; entry: ByteRange }[], options: ReadRangesOptions): Promise<Map<string, Uint8Array>> {
  const { onProgress } = options;
  const bytesTotal = entries.reduce((sum, { entry }) => sum + entry.end - entry.begin, 0);
  let bytesDone = 0;
  let last: ReadProgress | undefined;
  const report = (file: string, n: number) => {
    bytesDone += n;
    last = { bytesDone, bytesTotal, file };
    onProgress?.(last);
  };

  const data = new Map<string, Uint8Array>();
  const missing: typeof entries = [];
  await Promise.all(entries.map(async (item) => {
    const hit = await ranges.cached(item.file, item.entry.begin, item.entry.end);
    if (!hit) {
      missing.push(item);
      return;
    }
    data.set(item.entry.name, hit);
    report(item.file, hit.byteLength);
  }));

  // One failed read stops the others rather than letting them download on for nothing.
  const stop = new AbortController();
  const onAbort = () => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  try {
    await runLimited(planReads(missing, options.maxReadBytes, options.maxGap), options.concurrency, stop, async (read) => {
      // Progress counts tensor bytes only: padding between merged tensors is not reported.
      const padding = read.end - read.begin - read.tensors.reduce((sum, t) => sum + t.end - t.begin, 0);
      let skipped = 0;
      const { bytes } = await ranges.download(read.file, read.begin, read.end, {
        signal: stop.signal,
        onBytes: (n) => {
          const skip = Math.min(n, padding - skipped);
          skipped += skip;
          if (n > skip) report(read.file, n - skip);
        },
      });
      for (const t of read.tensors) {
        const view = bytes.subarray(t.begin - read.begin, t.end - read.begin);
        data.set(t.name, view);
        await ranges.store(read.file, t.begin, t.end, view);
      }
    });
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  if (entries.length && last?.bytesDone !== bytesTotal) onProgress?.({ bytesDone, bytesTotal, file: last?.file ?? entries[0]!.file });
  return data;
}
