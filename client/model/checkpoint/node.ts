// openCheckpoint for Node: a local folder (or file: URL) is read in place; anything else goes over
// HTTP with downloaded ranges cached on disk. Browser bundles import ./index.ts, never this file.
import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { FolderSource } from './folder-source.ts';
import { FsRangeCache } from './fs-cache.ts';
import { openCheckpoint, type CheckpointReader, type OpenCheckpointOptions } from './reader.ts';

export { FolderSource } from './folder-source.ts';
export { FsRangeCache, defaultCacheDir } from './fs-cache.ts';

export interface OpenCheckpointNodeOptions extends OpenCheckpointOptions {
  /** The disk cache's folder (default AIGRID_CACHE_DIR, else ~/.cache/aigrid); ignored when `cache` is given. */
  cacheDir?: string;
}

export async function openCheckpointNode(ref: string, options: OpenCheckpointNodeOptions = {}): Promise<CheckpointReader> {
  if (!options.source) {
    const folder = ref.startsWith('file:') ? fileURLToPath(ref) : /^https?:\/\//i.test(ref) ? undefined : ref;
    if (folder !== undefined && (await isFolder(folder))) {
      return openCheckpoint(ref, { cache: false, ...options, source: new FolderSource(folder) });
    }
  }
  return openCheckpoint(ref, { ...options, cache: options.cache ?? new FsRangeCache(options.cacheDir) });
}

async function isFolder(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
