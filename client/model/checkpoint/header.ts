// A shard's safetensors header in two small ranges: the 8-byte length, then the JSON, validated
// against the file's size so that a truncated file fails here, before any tensor is read.
import { AigridError } from '../../../protocol/errors.ts';
import type { CachedRanges } from './cached-ranges.ts';
import { headerLength, parseHeader, type SafetensorsHeader } from './safetensors.ts';

export async function readHeader(ranges: CachedRanges, file: string, signal?: AbortSignal): Promise<SafetensorsHeader> {
  const url = ranges.source.url(file);
  let prefix: Uint8Array;
  try {
    prefix = await ranges.read(file, 0, 8, (bytes, fileSize) => {
      const length = headerLength(bytes, url);
      if (8 + length > fileSize) {
        throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${url}: a ${length}-byte header does not fit in the ${fileSize}-byte file (truncated?)`);
      }
    }, { signal });
  } catch (err) {
    // A file shorter than 8 bytes cannot answer the range at all; say what is wrong with it.
    if (err instanceof AigridError && err.code === 'ERR_FETCH_FAILED') {
      const size = await ranges.source.size(file, { signal }).catch(() => undefined);
      if (size !== undefined && size < 8) {
        throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${url}: ${size} bytes is too short for a safetensors file`, { cause: err });
      }
    }
    throw err;
  }
  const length = headerLength(prefix, url);
  let header: SafetensorsHeader | undefined;
  await ranges.read(file, 8, 8 + length, (bytes, fileSize) => {
    const whole = new Uint8Array(8 + length);
    whole.set(prefix);
    whole.set(bytes, 8);
    header = parseHeader(whole, fileSize, url);
  }, { signal });
  return header!;
}
