// Downloaded byte ranges kept for the next load, keyed by the file's URL and the range. Entries
// carry the size of the file they came from, so a reader can tell a stale or damaged entry from a
// good one and download it again instead of using it.

export interface CachedRange {
  bytes: Uint8Array;
  /** Size of the whole file the range was read from. */
  fileSize: number;
}

export interface RangeCache {
  get(url: string, begin: number, end: number): Promise<CachedRange | undefined>;
  put(url: string, begin: number, end: number, entry: CachedRange): Promise<void>;
  delete(url: string, begin: number, end: number): Promise<void>;
}

export const BROWSER_CACHE_NAME = 'aigrid-weights';
const FILE_SIZE_HEADER = 'x-aigrid-file-size';

/** The browser's Cache API. Entries are stored as 200 responses: Cache.put refuses 206s. */
export class CacheApiRangeCache implements RangeCache {
  private opened: Promise<Cache> | undefined;

  constructor(
    readonly name = BROWSER_CACHE_NAME,
    private readonly storage: CacheStorage = globalThis.caches,
  ) {}

  private cache(): Promise<Cache> {
    this.opened ??= this.storage.open(this.name);
    return this.opened;
  }

  /** The range goes in the query: Cache API matching ignores URL fragments. */
  static key(url: string, begin: number, end: number): string {
    return `${url}${url.includes('?') ? '&' : '?'}aigrid-range=${begin}-${end}`;
  }

  async get(url: string, begin: number, end: number): Promise<CachedRange | undefined> {
    const res = await (await this.cache()).match(CacheApiRangeCache.key(url, begin, end));
    if (!res) return undefined;
    const fileSize = Number(res.headers.get(FILE_SIZE_HEADER));
    return { bytes: new Uint8Array(await res.arrayBuffer()), fileSize };
  }

  async put(url: string, begin: number, end: number, entry: CachedRange): Promise<void> {
    const body = new Uint8Array(entry.bytes); // a copy: Response must own a plain ArrayBuffer
    const res = new Response(body, {
      headers: { 'content-type': 'application/octet-stream', [FILE_SIZE_HEADER]: String(entry.fileSize) },
    });
    await (await this.cache()).put(CacheApiRangeCache.key(url, begin, end), res);
  }

  async delete(url: string, begin: number, end: number): Promise<void> {
    await (await this.cache()).delete(CacheApiRangeCache.key(url, begin, end));
  }
}

/** The cache a page gets by default: the Cache API where there is one, else none. */
export function defaultBrowserCache(): RangeCache | undefined {
  return typeof globalThis.caches === 'object' && globalThis.caches ? new CacheApiRangeCache() : undefined;
}
