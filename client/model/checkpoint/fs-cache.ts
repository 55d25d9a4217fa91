// Downloaded ranges in a folder on disk (Node only): one file per range, holding the size of the
// source file (8 bytes, little-endian) then the bytes. Writes go through a temporary file and a
// rename so that concurrent peers on one machine never see half an entry.
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { CachedRange, RangeCache } from './range-cache.ts';

export function defaultCacheDir(): string {
  return process.env.AIGRID_CACHE_DIR || join(homedir(), '.cache', 'aigrid');
}

export class FsRangeCache implements RangeCache {
  constructor(readonly dir: string = defaultCacheDir()) {}

  private folder(url: string): string {
    return join(this.dir, 'ranges', createHash('sha256').update(url).digest('hex').slice(0, 32));
  }

  async get(url: string, begin: number, end: number): Promise<CachedRange | undefined> {
    let data: Buffer;
    try {
      data = await readFile(join(this.folder(url), `${begin}-${end}`));
    } catch {
      return undefined;
    }
    if (data.byteLength < 8) return undefined;
    const fileSize = Number(data.readBigUInt64LE(0));
    return { bytes: new Uint8Array(data.buffer, data.byteOffset + 8, data.byteLength - 8), fileSize };
  }

  async put(url: string, begin: number, end: number, entry: CachedRange): Promise<void> {
    const folder = this.folder(url);
    // The URL beside the entries says what a folder holds to someone clearing the cache by hand.
    if (await mkdir(folder, { recursive: true })) await writeFile(join(folder, 'url.txt'), `${url}\n`);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(entry.fileSize));
    const path = join(folder, `${begin}-${end}`);
    const tmp = `${path}.${randomUUID()}.tmp`;
    try {
      await writeFile(tmp, [prefix, entry.bytes]);
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async delete(url: string, begin: number, end: number): Promise<void> {
    await rm(join(this.folder(url), `${begin}-${end}`), { force: true });
  }
}
