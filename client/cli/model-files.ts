// Serving a folder of model files over HTTP with Range requests (sirv) and CORS, so peers in other
// processes and in pages load their layers from this machine as they would from a hub mirror.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import sirv from 'sirv';

const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, HEAD, OPTIONS',
  'access-control-allow-headers': 'range',
  'access-control-expose-headers': 'Content-Range, Content-Length, Accept-Ranges',
};

/**
 * Answers requests under `prefix` (e.g. '/models/x') from `dir`; false for any other path. With
 * `only`, that one file of the folder and nothing else (a GGUF file among a person's downloads).
 */
export function modelFilesHandler(dir: string, prefix: string, only?: string): (req: IncomingMessage, res: ServerResponse) => boolean {
  const serve = sirv(dir, { dev: true, dotfiles: false, etag: true });
  const base = prefix.replace(/\/+$/, '');
  return (req, res) => {
    const url = req.url ?? '/';
    if (url !== base && !url.startsWith(`${base}/`)) return false;
    for (const [name, value] of Object.entries(CORS_HEADERS)) res.setHeader(name, value);
    if (req.method === 'OPTIONS') {
      res.writeHead(204).end();
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD, OPTIONS' }).end();
      return true;
    }
    const path = url.slice(base.length).split('?')[0] || '/';
    if (!servable(path) || (only !== undefined && path !== `/${encodeURIComponent(only)}` && path !== `/${only}`)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return true;
    }
    req.url = path;
    serve(req, res, () => {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    });
    return true;
  };
}

/**
 * Only plain files below the folder: no segment may start with a dot (dotfiles such as .env or
 * .git/config, and `..`), decoded or not. sirv's own dotfile rule does not apply in its dev mode,
 * which this server needs to see files written after it started.
 */
function servable(path: string): boolean {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return false;
  }
  return !decoded.includes('\\') && !decoded.includes('\0') && decoded.split('/').every((segment) => !segment.startsWith('.'));
}

export interface ModelFileServer {
  /** URL of the folder, e.g. http://127.0.0.1:40123/models/my-model */
  url: string;
  close(): Promise<void>;
}

/** A server of its own for one model folder (aigrid serve ./folder), or for one file of it (`only`). */
export async function startModelFileServer(dir: string, name: string, host = '127.0.0.1', port = 0, only?: string): Promise<ModelFileServer> {
  const prefix = `/models/${encodeURIComponent(name)}`;
  const handle = modelFilesHandler(dir, prefix, only);
  const server = createServer((req, res) => {
    if (!handle(req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const address = server.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${address.port}${prefix}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
