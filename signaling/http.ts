// HTTP side of the signaling server: health, metrics, a read-only view of the registry and of what
// each network serves, and the built web app as static files.
import { existsSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import sirv from 'sirv';
import { DEFAULT_CREDIT_RULES, NetworkSchema, type ModelCoverage, type PeerServing } from '../protocol/index.ts';
import type { RoutesView } from '../protocol/routes-view.ts';
import type { NetworkRules } from './governance.ts';
import type { RegistryStore } from './registry.ts';

/** Extra routes: answers true when it took the request. */
export type HttpMount = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface HttpOptions {
  store: RegistryStore;
  /** The models a network serves with their per-layer coverage (none when not given). */
  models?: (network: string) => Promise<ModelCoverage[]>;
  /** Which peer serves which layers, with its last status (none when not given). */
  serving?: (network: string) => Promise<PeerServing[]>;
  /** What clients found of each member's work (none when not given). */
  trust?: (network: string) => Promise<Record<string, unknown>>;
  /** The routes handed out lately with each hop's latency, and the links they use (404 when not given). */
  routes?: (network: string) => Promise<RoutesView>;
  /** The network's owner and who may serve on it (none when not given). */
  rules?: (network: string) => NetworkRules | undefined;
  /** The Prometheus exposition for /metrics (404 when not given). */
  metrics?: { contentType: string; text(): Promise<string> };
  staticDir?: string;
  startedAt: number;
  log: (line: string) => void;
  mount?: HttpMount;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export function createHttpHandler(opts: HttpOptions): Handler {
  const serveStatic = staticHandler(opts.staticDir);
  return (req, res) => {
    if (opts.mount?.(req, res)) return;
    route(opts, serveStatic, req, res).catch((err: unknown) => {
      opts.log(`http error on ${req.method} ${req.url}: ${(err as Error)?.stack ?? String(err)}`);
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  };
}

async function route(opts: HttpOptions, serveStatic: Handler, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = pathOf(req.url);
  const readOnly = req.method === 'GET' || req.method === 'HEAD';
  const isApi = path === '/healthz' || path === '/metrics' || path === '/api' || path.startsWith('/api/');
  if (!readOnly) {
    res.setHeader('Allow', 'GET, HEAD');
    if (isApi) return json(res, 405, { error: `method ${req.method} not allowed` });
    return text(res, 405, 'method not allowed\n');
  }
  if (path === '/healthz') {
    const uptimeS = Math.round((Date.now() - opts.startedAt) / 1000);
    const [networks, peers] = await Promise.all([opts.store.networks(), opts.store.count()]);
    return json(res, 200, { ok: true, uptimeS, networks: networks.length, peers });
  }
  if (path === '/metrics' && opts.metrics) {
    const body = await opts.metrics.text();
    res.writeHead(200, { 'Content-Type': opts.metrics.contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    return void res.end(body);
  }
  if (path === '/api/networks') {
    const names = await opts.store.networks();
    const networks = await Promise.all(names.map(async (network) => ({ network, peers: await opts.store.list(network) })));
    return json(res, 200, { networks });
  }
  const routesOf = /^\/api\/networks\/([^/]+)\/routes$/.exec(path);
  if (routesOf && opts.routes) {
    const network = safeDecode(routesOf[1] ?? '');
    const known = NetworkSchema.safeParse(network).success && (await opts.store.count(network)) > 0;
    if (!known) return json(res, 404, { error: `no network ${JSON.stringify(network.slice(0, 64))}` });
    return json(res, 200, await opts.routes(network));
  }
  const match = /^\/api\/networks\/([^/]+)$/.exec(path);
  if (match) {
    const network = safeDecode(match[1] ?? '');
    const peers = NetworkSchema.safeParse(network).success ? await opts.store.list(network) : [];
    if (peers.length === 0) return json(res, 404, { error: `no network ${JSON.stringify(network.slice(0, 64))}` });
    const models = opts.models ? await opts.models(network) : [];
    const serving = opts.serving ? await opts.serving(network) : [];
    const rules = opts.rules?.(network);
    const reputation = opts.trust ? await opts.trust(network) : {};
    return json(res, 200, { network, ...(rules ? { owner: rules.owner, servers: rules.servers, sources: rules.sources, credits: { ...DEFAULT_CREDIT_RULES, ...rules.credits } } : {}), peers, models, serving, reputation });
  }
  if (isApi) return json(res, 404, { error: `no such endpoint ${path.slice(0, 100)}` });
  serveStatic(req, res);
}

/**
 * Headers of every file of the web app. COOP and COEP make the app's pages cross-origin isolated
 * (SharedArrayBuffer, so the CPU backend's WebAssembly SIMD kernels and their worker threads);
 * require-corp rather than credentialless because everything the app loads is its own or CORS
 * fetches (weights, tokenizers), and Safari isolates only with require-corp. Any origin may load
 * the files (CORS, and CORP for no-cors loads): pages elsewhere import the SDK from /sdk.js and
 * its chunks, /assets/ and /ort/, whatever their own isolation.
 */
export const APP_HEADERS: Readonly<Record<string, string>> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'cross-origin',
  'Access-Control-Allow-Origin': '*',
};

function staticHandler(dir: string | undefined): Handler {
  const notFound: Handler = (_req, res) => text(res, 404, 'not found\n');
  const hint = `The web app is not built${dir ? ` (no ${dir})` : ''}: run npm run build.\n`;
  let serve: Handler | null = null;
  return (req, res) => {
    // Checked per request so a server started before the build picks the app up once it exists.
    if (!serve) {
      if (!dir || !existsSync(dir) || !statSync(dir).isDirectory()) return text(res, 404, hint);
      // dev mode looks files up per request: a rebuild while the server runs never leaves it
      // pointing at deleted files (the cached mode would fail reading them).
      serve = sirv(dir, { dev: true, etag: true, single: false, onNoMatch: notFound, setHeaders: (res) => {
        for (const [name, value] of Object.entries(APP_HEADERS)) res.setHeader(name, value);
      } });
    }
    // The per-request lookup would serve dotfiles (.env, .git); nothing of the app starts with a dot.
    const path = pathOf(req.url);
    if (/\/\./.test(path) || /\/\./.test(safeDecode(path))) return notFound(req, res);
    serve(req, res);
  };
}

function pathOf(url: string | undefined): string {
  const raw = (url ?? '/').split('?')[0] ?? '/';
  return raw.startsWith('/') ? raw : `/${raw}`;
}

function safeDecode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(payload),
    'Cache-Control': 'no-store',
    'Access-Control-Allow-Origin': '*',
  });
  res.end(payload);
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
