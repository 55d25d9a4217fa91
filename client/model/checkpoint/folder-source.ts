// Files of a model folder on the local disk (Node only). Kept apart from the rest of the loader so
// browser bundles never import node:fs.
import { open, readFile, stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AigridError } from '../../../protocol/errors.ts';
import type { ByteSource, ReadOptions } from './source.ts';

export class FolderSource implements ByteSource {
  readonly folder: string;

  constructor(folder: string) {
    this.folder = resolve(folder);
  }

  path(file: string): string {
    const path = resolve(this.folder, file);
    if (!path.startsWith(this.folder + sep)) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `${file} is outside the model folder ${this.folder}`);
    }
    return path;
  }

  url(file: string): string {
    return pathToFileURL(this.path(file)).href;
  }

  async size(file: string, options: ReadOptions = {}): Promise<number> {
    options.signal?.throwIfAborted();
    const path = this.path(file);
    try {
      return (await stat(path)).size;
    } catch (err) {
      throw failed(path, err);
    }
  }

  async read(file: string, begin: number, end: number, options: ReadOptions = {}): Promise<Uint8Array> {
    if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || begin < 0 || end < begin) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `bad byte range [${begin}, ${end}) of ${file}`);
    }
    options.signal?.throwIfAborted();
    const path = this.path(file);
    const out = new Uint8Array(end - begin);
    let got = 0;
    try {
      const handle = await open(path, 'r');
      try {
        while (got < out.byteLength) {
          options.signal?.throwIfAborted();
          const { bytesRead } = await handle.read(out, got, Math.min(out.byteLength - got, 1 << 24), begin + got);
          if (bytesRead === 0) break;
          got += bytesRead;
          options.onBytes?.(bytesRead);
        }
      } finally {
        await handle.close();
      }
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw failed(path, err);
    }
    if (got !== out.byteLength) {
      throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${path}: ends at byte ${begin + got}, before ${end} (truncated?)`);
    }
    return out;
  }

  async text(file: string, options: ReadOptions = {}): Promise<string> {
    options.signal?.throwIfAborted();
    const path = this.path(file);
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      throw failed(path, err);
    }
  }

  async exists(file: string): Promise<boolean> {
    try {
      return (await stat(this.path(file))).isFile();
    } catch {
      return false;
    }
  }
}

function failed(path: string, err: unknown): AigridError {
  return new AigridError('ERR_FETCH_FAILED', `${path}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}
