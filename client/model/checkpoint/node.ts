// openCheckpoint for Node: a local folder (or file: URL) is read in place; anything else goes over
// HTTP with downloaded ranges cached on disk. Browser bundles import ./index.ts, never this file.
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isGgufRef } from '../../../protocol/ids.ts';
import { FolderSource } from './folder-source.ts';
import { FsRangeCache } from './fs-cache.ts';
import { openCheckpoint, openModel, type Checkpoint, type CheckpointReader, type OpenCheckpointOptions } from './reader.ts';

export { FolderSource } from './folder-source.ts';
export { FsRangeCache, defaultCacheDir } from './fs-cache.ts';

export interface OpenCheckpointNodeOptions extends OpenCheckpointOptions {
  /** The disk cache's folder (default AIGRID_CACHE_DIR, else ~/.cache/aigrid); ignored when `cache` is given. */
  cacheDir?: string;
}

/** Any model reference (openModel's), a local GGUF file read in place. */
export async function openModelNode(ref: string, options: OpenCheckpointNodeOptions = {}): Promise<Checkpoint> {
  if (!isGgufRef(ref)) return openCheckpointNode(ref, options);
  const path = options.source ? undefined : ref.startsWith('file:') ? fileURLToPath(ref) : /^https?:\/\//i.test(ref) ? undefined : ref;
  if (path !== undefined && (await isFile(path))) {
    return openModel(basename(path), { cache: false, ...options, source: new FolderSource(dirname(path)) });
  }
  return openModel(ref, { ...options, cache: options.cache ?? new FsRangeCache(options.cacheDir) });
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

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function isFolder(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
