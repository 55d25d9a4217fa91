// A static file server on 127.0.0.1 that answers single Range requests and counts the body bytes it
// sends per file, so tests can assert exactly what a loader downloaded. It serves a folder as
// `/<path>` and as a Hugging Face mirror: `/<org>/<name>/resolve/<rev>/<file>` maps to
// `<root>/<org>/<name>/<rev>/<file>`. Misbehaviours (ignoring Range, short bodies, delays) can be
// switched on per test. Every answer allows any origin (CORS), so pages served from another origin
// (the signaling server's web app) read the files as they would read a real mirror.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative, resolve, sep } from 'node:path';

export interface RangeServerFaults {
  /** Answer range requests with 200 and the whole file, as a server without Range support does. */
  ignoreRange?: boolean;
  /** Send this many bytes fewer than the range asked for (with a matching Content-Length). */
  truncateBy?: number;
  /** Wait this long before answering GET requests. */
  delayMs?: number;
}

export interface ServedRequest {
  method: string;
  /** The file under the root, with '/' separators. */
  file: string;
  range?: string;
  status: number;
}

export interface RangeServer {
  /** http://127.0.0.1:<port> */
  url: string;
  faults: RangeServerFaults;
  /** Body bytes sent per file (relative to the root, '/' separators). */
  readonly bytesSent: Map<string, number>;
  readonly requests: ServedRequest[];
  /** Sum of bytesSent over files whose path ends with `suffix` (all files without one). */
  sent(suffix?: string): number;
  reset(): void;
  close(): Promise<void>;
}

const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, HEAD, OPTIONS',
  'access-control-allow-headers': 'range',
  'access-control-expose-headers': 'Content-Range, Content-Length, Accept-Ranges',
  'access-control-max-age': '600',
};

export async function startRangeServer(rootFolder: string): Promise<RangeServer> {
  const root = resolve(rootFolder);
  const bytesSent = new Map<string, number>();
  const requests: ServedRequest[] = [];
  const faults: RangeServerFaults = {};

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    for (const [name, value] of Object.entries(CORS_HEADERS)) res.setHeader(name, value);
    if (req.method === 'OPTIONS') {
      res.writeHead(204).end(); // a CORS preflight: not a file request, so not recorded
      return;
    }
    const path = filePath(root, req.url ?? '/');
    const file = path ? relative(root, path).split(sep).join('/') : (req.url ?? '');
    const record = (status: number) => requests.push({ method: req.method ?? 'GET', file, range: req.headers.range, status });
    const size = path ? await stat(path).then((s) => (s.isFile() ? s.size : undefined), () => undefined) : undefined;
    if (!path || size === undefined) {
      record(404);
      res.writeHead(404).end();
      return;
    }
    if (req.method === 'HEAD') {
      record(200);
      res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' }).end();
      return;
    }
    if (faults.delayMs) await new Promise((r) => setTimeout(r, faults.delayMs));
    let begin = 0;
    let end = size;
    let status = 200;
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
    if (req.headers.range && !faults.ignoreRange) {
      const range = parseRange(req.headers.range, size);
      if (!range) {
        record(416);
        res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        return;
      }
      [begin, end] = range;
      status = 206;
      headers['content-range'] = `bytes ${begin}-${end - 1}/${size}`;
    }
    const sendEnd = Math.max(begin, end - (faults.truncateBy ?? 0));
    headers['content-length'] = sendEnd - begin;
    record(status);
    res.writeHead(status, headers);
    if (sendEnd === begin) {
      res.end();
      return;
    }
    const stream = createReadStream(path, { start: begin, end: sendEnd - 1 });
    stream.on('data', (chunk) => bytesSent.set(file, (bytesSent.get(file) ?? 0) + chunk.length));
    stream.pipe(res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    faults,
    bytesSent,
    requests,
    sent: (suffix = '') => [...bytesSent].reduce((sum, [file, n]) => (file.endsWith(suffix) ? sum + n : sum), 0),
    reset: () => {
      bytesSent.clear();
      requests.length = 0;
      for (const key of Object.keys(faults) as (keyof RangeServerFaults)[]) delete faults[key];
    },
    close: () => new Promise<void>((done) => {
      server.closeAllConnections();
      server.close(() => done());
    }),
  };
}

/** The file a request names, or undefined when it is outside the root. */
function filePath(root: string, url: string): string | undefined {
  let parts: string[];
  try {
    parts = new URL(url, 'http://x').pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return undefined;
  }
  // HF style: org/name/resolve/rev/file... -> org/name/rev/file...
  if (parts[2] === 'resolve' && parts.length >= 5) parts = [parts[0]!, parts[1]!, parts[3]!, ...parts.slice(4)];
  const path = resolve(join(root, ...parts));
  return path.startsWith(root + sep) ? path : undefined;
}

/** A single `bytes=a-b`, `bytes=a-` or `bytes=-n` range as [begin, end), or undefined if unsatisfiable. */
function parseRange(header: string, size: number): [number, number] | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Math.min(Number(m[2]), size);
    return n > 0 ? [size - n, size] : undefined;
  }
  const begin = Number(m[1]);
  const end = m[2] === '' ? size : Math.min(Number(m[2]) + 1, size);
  return begin < size && begin < end ? [begin, end] : undefined;
}
