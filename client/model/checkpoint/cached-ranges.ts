// Byte ranges read through the cache: a cached entry is used only when its length and the size of
// the file it came from agree with what is known; anything else is dropped and downloaded again.
// Cache failures (quota, private browsing) never fail a load: the cache is only an optimisation.
import { AigridError } from '../../../protocol/errors.ts';
import type { RangeCache } from './range-cache.ts';
import type { ByteSource, ReadOptions } from './source.ts';

/** Throws when bytes read for a range are not what they should be (e.g. a header that does not parse). */
export type RangeCheck = (bytes: Uint8Array, fileSize: number) => void;

export class CachedRanges {
  /** Each file's size as last seen, from a download or from the entries the cache served. */
  readonly sizes = new Map<string, number>();
  /** Ranges served from the cache, per file: dropped together if the file turns out to have changed. */
  private readonly served = new Map<string, [number, number][]>();

  constructor(readonly source: ByteSource, readonly cache?: RangeCache) {}

  /** A range that passes `check`, from the cache if a good copy is there, else downloaded (and cached). */
  async read(file: string, begin: number, end: number, check: RangeCheck, options: ReadOptions = {}): Promise<Uint8Array> {
    const url = this.source.url(file);
    const hit = await this.lookup(url, begin, end);
    if (hit) {
      try {
        const known = this.sizes.get(file);
        if (known !== undefined && known !== hit.fileSize) throw new Error('cached from another version of the file');
        check(hit.bytes, hit.fileSize);
        this.sizes.set(file, hit.fileSize);
        this.note(file, begin, end);
        return hit.bytes;
      } catch {
        await this.drop(url, begin, end);
      }
    }
    options.signal?.throwIfAborted();
    const { bytes, fileSize } = await this.download(file, begin, end, options);
    check(bytes, fileSize);
    await this.store(file, begin, end, bytes);
    return bytes;
  }

  /** A cached range whose source file has the known size; a stale or damaged entry is dropped. */
  async cached(file: string, begin: number, end: number): Promise<Uint8Array | undefined> {
    const url = this.source.url(file);
    const hit = await this.lookup(url, begin, end);
    if (!hit) return undefined;
    if (hit.fileSize !== this.sizes.get(file)) {
      await this.drop(url, begin, end);
      return undefined;
    }
    this.note(file, begin, end);
    return hit.bytes;
  }

  /** Downloads a range; the file must still have the size its header was read at. */
  async download(file: string, begin: number, end: number, options: ReadOptions = {}): Promise<{ bytes: Uint8Array; fileSize: number }> {
    const bytes = await this.source.read(file, begin, end, options);
    const fileSize = await this.source.size(file, options);
    const known = this.sizes.get(file);
    if (known !== undefined && known !== fileSize) {
      const stale = this.served.get(file) ?? [];
      this.served.delete(file);
      const url = this.source.url(file);
      await Promise.all(stale.map(([b, e]) => this.drop(url, b, e)));
      throw new AigridError(
        'ERR_CHECKPOINT_CORRUPT',
        `${url} now has ${fileSize} bytes, not the ${known} it had when its header was read` +
          (stale.length ? '; its cached ranges were dropped, open the checkpoint again' : ''),
      );
    }
    this.sizes.set(file, fileSize);
    return { bytes, fileSize };
  }

  async store(file: string, begin: number, end: number, bytes: Uint8Array): Promise<void> {
    const fileSize = this.sizes.get(file);
    if (!this.cache || fileSize === undefined) return;
    await this.cache.put(this.source.url(file), begin, end, { bytes, fileSize }).catch(() => undefined);
  }

  private async lookup(url: string, begin: number, end: number) {
    if (!this.cache) return undefined;
    const hit = await this.cache.get(url, begin, end).catch(() => undefined);
    if (!hit) return undefined;
    if (hit.bytes.byteLength !== end - begin || !Number.isSafeInteger(hit.fileSize) || hit.fileSize < end) {
      await this.drop(url, begin, end);
      return undefined;
    }
    return hit;
  }

  private async drop(url: string, begin: number, end: number): Promise<void> {
    await this.cache?.delete(url, begin, end).catch(() => undefined);
  }

  private note(file: string, begin: number, end: number): void {
    let ranges = this.served.get(file);
    if (!ranges) this.served.set(file, (ranges = []));
    ranges.push([begin, end]);
  }
}
