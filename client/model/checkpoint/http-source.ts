// Files of a model folder over HTTP(S), read with Range requests so a peer downloads only the
// bytes it serves. Runs on any fetch: browsers, Node's global fetch, or one injected in tests.
import { AigridError } from '../../../protocol/errors.ts';
import { fileUrl, type ByteSource, type ReadOptions } from './source.ts';

export interface HttpSourceOptions {
  fetch?: typeof fetch;
  /** Extra request headers, e.g. `Authorization: Bearer hf_...` for gated models. */
  headers?: Record<string, string>;
}

export class HttpSource implements ByteSource {
  private readonly fetchFn: typeof fetch;
  private readonly headers: Record<string, string>;
  /** File sizes learnt from Content-Range, so size() after a read costs no request. */
  private readonly sizes = new Map<string, number>();

  /** `folderUrl` is the model folder, ending in '/' (see resolveModelUrl). */
  constructor(readonly folderUrl: string, options: HttpSourceOptions = {}) {
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.headers = options.headers ?? {};
  }

  url(file: string): string {
    return fileUrl(this.folderUrl, file);
  }

  async size(file: string, options: ReadOptions = {}): Promise<number> {
    const known = this.sizes.get(file);
    if (known !== undefined) return known;
    const url = this.url(file);
    const res = await this.request(url, 'HEAD', {}, options.signal);
    const length = Number(res.headers.get('content-length') ?? NaN);
    if (!Number.isSafeInteger(length) || length < 0) fail(url, 'the response to HEAD has no Content-Length');
    this.sizes.set(file, length);
    return length;
  }

  async read(file: string, begin: number, end: number, options: ReadOptions = {}): Promise<Uint8Array> {
    if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || begin < 0 || end < begin) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `bad byte range [${begin}, ${end}) of ${file}`);
    }
    if (begin === end) return new Uint8Array(0);
    const url = this.url(file);
    const want = end - begin;
    const res = await this.request(url, 'GET', { Range: `bytes=${begin}-${end - 1}` }, options.signal);
    if (res.status === 200) {
      // A server that ignores Range sends the whole file; only accept it when that is the range.
      const length = Number(res.headers.get('content-length') ?? NaN);
      if (begin !== 0 || length !== want) {
        await discard(res);
        fail(url, `the server ignored the Range request for bytes ${begin}-${end - 1} (200 with ${Number.isNaN(length) ? 'the whole file' : `${length} bytes`}); it must answer 206`);
      }
      this.remember(file, url, want);
    } else {
      const raw = res.headers.get('content-range');
      const range = parseContentRange(raw);
      if (res.status !== 206 || !range || range.begin !== begin || range.end !== end) {
        await discard(res);
        fail(url, `asked for bytes ${begin}-${end - 1}, got HTTP ${res.status} with Content-Range ${raw ?? '(none)'}`);
      }
      if (range.size !== undefined) this.remember(file, url, range.size);
    }
    return readBody(res, want, url, options);
  }

  async text(file: string, options: ReadOptions = {}): Promise<string> {
    const url = this.url(file);
    const res = await this.request(url, 'GET', {}, options.signal);
    try {
      return await res.text();
    } catch (err) {
      throw rethrow(err, url, options.signal);
    }
  }

  async exists(file: string, options: ReadOptions = {}): Promise<boolean> {
    const url = this.url(file);
    const res = await this.request(url, 'HEAD', {}, options.signal, [404, 410]);
    return res.ok;
  }

  private remember(file: string, url: string, size: number): void {
    const known = this.sizes.get(file);
    if (known !== undefined && known !== size) fail(url, `the file changed size from ${known} to ${size} bytes while reading it`);
    this.sizes.set(file, size);
  }

  /** fetch with the network, abort and status errors made AigridErrors; `allowed` statuses pass through. */
  private async request(url: string, method: string, headers: Record<string, string>, signal?: AbortSignal, allowed: number[] = []): Promise<Response> {
    signal?.throwIfAborted();
    let res: Response;
    try {
      res = await this.fetchFn(url, { method, headers: { ...this.headers, ...headers }, signal, redirect: 'follow' });
    } catch (err) {
      throw rethrow(err, url, signal);
    }
    if (res.ok || allowed.includes(res.status)) return res;
    await discard(res);
    const why = res.status === 401 || res.status === 403
      ? ' (a gated or private model needs an Authorization header; a wrong model id also answers 401)'
      : res.status === 404 ? ' (check the model id, revision and file name)' : '';
    return fail(url, `HTTP ${[res.status, res.statusText].filter(Boolean).join(' ')}${why}`);
  }
}

function fail(url: string, what: string): never {
  throw new AigridError('ERR_FETCH_FAILED', `${url}: ${what}`);
}

/** Aborts surface as the signal's reason; anything else as ERR_FETCH_FAILED naming the URL. */
function rethrow(err: unknown, url: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (err instanceof AigridError) return err;
  return new AigridError('ERR_FETCH_FAILED', `${url}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

/** `bytes a-b/size` (size may be `*`) as a half-open range. */
export function parseContentRange(value: string | null): { begin: number; end: number; size?: number } | null {
  const m = value?.match(/^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i);
  if (!m) return null;
  const begin = Number(m[1]);
  const end = Number(m[2]) + 1;
  const size = m[3] === '*' ? undefined : Number(m[3]);
  if (end <= begin || (size !== undefined && end > size)) return null;
  return { begin, end, size };
}

/** Reads exactly `want` bytes of the body, reporting them as they come; more or fewer is an error. */
async function readBody(res: Response, want: number, url: string, options: ReadOptions): Promise<Uint8Array> {
  const out = new Uint8Array(want);
  let got = 0;
  try {
    if (!res.body) {
      const all = new Uint8Array(await res.arrayBuffer());
      if (all.byteLength > want) fail(url, `the body has ${all.byteLength} bytes, more than the ${want} asked for`);
      out.set(all);
      got = all.byteLength;
      options.onBytes?.(got);
    } else {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (got + value.byteLength > want) {
          await reader.cancel().catch(() => undefined);
          fail(url, `the body is longer than the ${want} bytes asked for`);
        }
        out.set(value, got);
        got += value.byteLength;
        options.onBytes?.(value.byteLength);
      }
    }
  } catch (err) {
    throw rethrow(err, url, options.signal);
  }
  if (got !== want) fail(url, `short body: got ${got} of ${want} bytes`);
  return out;
}
