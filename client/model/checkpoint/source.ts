// Where checkpoint bytes come from. The reader sees files only through ByteSource, so the same
// loader reads a Hugging Face repository, a mirror, a static folder over HTTP or a local folder.
import { AigridError } from '../../../protocol/errors.ts';
import { isHuggingFaceId } from '../../../protocol/ids.ts';

export interface ReadOptions {
  signal?: AbortSignal;
  /** Called as bytes arrive, with the count of new bytes (for progress within one large range). */
  onBytes?: (n: number) => void;
}

export interface ByteSource {
  /** A stable, absolute name for the file (its URL or path): the key of cached ranges. */
  url(file: string): string;
  /** The file's size in bytes. */
  size(file: string, options?: ReadOptions): Promise<number>;
  /** Exactly the bytes [begin, end) of the file, or an error; never more, never fewer. */
  read(file: string, begin: number, end: number, options?: ReadOptions): Promise<Uint8Array>;
  /** The whole (small) file as UTF-8 text. */
  text(file: string, options?: ReadOptions): Promise<string>;
  exists(file: string, options?: ReadOptions): Promise<boolean>;
}

export const DEFAULT_HF_BASE_URL = 'https://huggingface.co';

export interface ModelUrlOptions {
  /** Where Hugging Face model ids resolve (a mirror in tests or behind a firewall). */
  baseUrl?: string;
  /** Branch, tag or commit of a Hugging Face model id; pin a commit to make cached ranges immutable. */
  revision?: string;
}

export { isHuggingFaceId };

/**
 * The folder URL (ending in '/') that a model reference names: an http(s) URL of the model folder,
 * a Hugging Face id resolved to `${baseUrl}/${id}/resolve/${revision}/`, or, in a page, a path
 * relative to the page.
 */
export function resolveModelUrl(ref: string, options: ModelUrlOptions = {}): string {
  if (/^https?:\/\//i.test(ref)) return ref.endsWith('/') ? ref : `${ref}/`;
  if (isHuggingFaceId(ref)) {
    const base = (options.baseUrl ?? DEFAULT_HF_BASE_URL).replace(/\/+$/, '');
    // Revisions such as refs/pr/1 travel as one path segment.
    return `${base}/${ref}/resolve/${encodeURIComponent(options.revision ?? 'main')}/`;
  }
  const page = (globalThis as { location?: { href?: string } }).location?.href;
  if (page && /^\.{0,2}\//.test(ref)) {
    const url = new URL(ref, page).href;
    return url.endsWith('/') ? url : `${url}/`;
  }
  throw new AigridError(
    'ERR_INVALID_ARGUMENT',
    `model reference ${JSON.stringify(ref)} is neither an http(s) URL of a model folder nor a Hugging Face id (org/name)`,
  );
}

/** A file's URL inside a folder URL; each path segment is escaped, the slashes are kept. */
export function fileUrl(folderUrl: string, file: string): string {
  return folderUrl + file.split('/').map(encodeURIComponent).join('/');
}
