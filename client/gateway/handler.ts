// The OpenAI-compatible API over a Grid, as one request handler. It takes every request under /v1
// and answers false for the rest, so it mounts beside other routes (the signaling server's mount).
// Whatever arrives, it answers once or closes the connection; nothing thrown escapes it. Each
// request has a deadline; close() stops taking requests and lets running ones finish for a grace
// period before ending them with a clear error.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { originAllowed } from '../../protocol/index.ts';
import { Admission } from './admission.ts';
import { bearerCheck } from './auth.ts';
import { ClientGone } from './body.ts';
import { ApiError } from './errors.ts';
import { ModelDirectory } from './models.ts';
import { Pacer, routeRate } from './pacer.ts';
import { sendError, sendPreflight } from './respond.ts';
import { endedWith, routeOf, toApiError, type Context, type GatewayGrid, type Shared } from './routes.ts';
import { settingsOf, type GatewayOptions } from './settings.ts';

export type { GatewayGrid } from './routes.ts';
export type { GatewayOptions } from './settings.ts';

export type GatewayHandler = ((req: IncomingMessage, res: ServerResponse) => boolean) & {
  /**
   * Stops taking requests (new ones, and those still waiting for a turn, are answered 503
   * ERR_SERVER_SHUTDOWN); running ones get `graceMs` (default the shutdownGraceMs option) to
   * finish, then end with ERR_SERVER_SHUTDOWN. Resolves when every request has been answered.
   */
  close(graceMs?: number): Promise<void>;
};

/** Most generations started back to back before the pacer's rate applies. */
const MAX_BURST = 8;
/** After the grace, how long ended requests get to write their error before their sockets are cut. */
const FINAL_WRITE_MS = 2_000;

export function createGatewayHandler(grid: GatewayGrid, options: GatewayOptions = {}): GatewayHandler {
  const settings = settingsOf(options);
  const authorize = bearerCheck(options.apiKey);
  const rate = () => settings.routesPerSecond ?? routeRate(grid.mesh?.signaling.limits?.messagesPerSecond);
  const shared: Shared = {
    grid,
    settings,
    admission: new Admission(settings),
    models: new ModelDirectory(grid, { listTtlMs: settings.modelListTtlMs, idleMs: settings.modelIdleMs, maxModels: settings.maxModels }),
    pacer: new Pacer(rate, () => Math.max(1, Math.min(MAX_BURST, Math.floor(rate() / 2)))),
  };
  /** Requests not yet answered, with what ends each; bounded by the connections the HTTP server holds. */
  const open = new Map<Context, AbortController>();
  const whenEmpty: (() => void)[] = [];
  let closing: Promise<void> | null = null;

  const handler = (req: IncomingMessage, res: ServerResponse): boolean => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path !== '/v1' && !path.startsWith('/v1/')) return false;
    const origin = req.headers.origin;
    if (!originAllowed({ origin, host: req.headers.host, allowed: options.allowedOrigins, loopbackBound: options.loopbackBound ?? true })) {
      refuseOrigin(res, origin!);
      return true;
    }
    if (closing) {
      sendError(res, shuttingDown());
      return true;
    }
    const controller = new AbortController();
    const ctx: Context = { req, res, shared, signal: controller.signal };
    open.set(ctx, controller);
    const deadline = setTimeout(() => {
      const ms = settings.requestTimeoutMs;
      end(ctx, controller, new ApiError(504, `The request did not finish within the gateway's deadline of ${ms} ms.`, 'ERR_DEADLINE_EXCEEDED'));
    }, settings.requestTimeoutMs);
    res.on('close', () => {
      clearTimeout(deadline);
      // A response closed before it finished means the client left: stop its generation on the peers.
      if (!res.writableFinished) controller.abort(new ClientGone('the client closed the connection'));
      open.delete(ctx);
      if (open.size === 0) for (const done of whenEmpty.splice(0)) done();
    });
    handle(ctx, path, authorize).catch((err: unknown) => answerError(ctx, err));
    return true;
  };

  const drained = (ms: number) =>
    new Promise<void>((resolve) => {
      if (open.size === 0) return resolve();
      const timer = setTimeout(resolve, ms);
      whenEmpty.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });

  handler.close = (graceMs = settings.shutdownGraceMs) =>
    (closing ??= (async () => {
      shared.admission.close(shuttingDown());
      shared.models.close();
      await drained(graceMs);
      const late = new ApiError(503, `The gateway shut down; this request was still running when its grace period of ${graceMs} ms ended.`, 'ERR_SERVER_SHUTDOWN', null, { 'Retry-After': '5' });
      for (const [ctx, controller] of open) end(ctx, controller, late);
      shared.pacer.close(late);
      await drained(FINAL_WRITE_MS);
      for (const ctx of open.keys()) ctx.res.destroy();
    })());
  return handler;
}

function shuttingDown(): ApiError {
  return new ApiError(503, 'The gateway is shutting down and takes no more requests.', 'ERR_SERVER_SHUTDOWN', null, { 'Retry-After': '5', Connection: 'close' });
}

/**
 * Ends a request the gateway gives up on: whatever it awaits rejects with `error` (every wait goes
 * through its signal), the SDK stops its generation on the peers, and the request answers `error`
 * (as an HTTP error before a stream began, as its last event after).
 */
function end(ctx: Context, controller: AbortController, error: ApiError): void {
  if (ctx.res.writableEnded || ctx.res.destroyed) return;
  controller.abort(error);
}

async function handle(ctx: Context, path: string, authorize: (req: IncomingMessage) => void): Promise<void> {
  const { req, res } = ctx;
  const method = req.method ?? 'GET';
  if (method === 'OPTIONS') return sendPreflight(req, res);
  authorize(req);
  const route = routeOf(ctx, path.replace(/\/+$/, ''));
  if (!route) throw new ApiError(404, `Invalid URL (${method} ${path.slice(0, 200)}).`, 'unknown_url');
  if (!route.methods.includes(method)) {
    const allow = [...route.methods, 'OPTIONS'].join(', ');
    throw new ApiError(405, `Method ${method.slice(0, 20)} is not allowed on ${path.slice(0, 200)}; use ${route.methods[0]}.`, 'method_not_allowed', null, { Allow: allow });
  }
  await route.run(ctx);
}

function answerError(ctx: Context, err: unknown): void {
  const { res, req } = ctx;
  const ended = endedWith(ctx);
  if (!ended && (err instanceof ClientGone || ctx.signal.aborted || res.destroyed)) return void res.destroy();
  const error = ended ?? toApiError(ctx, err);
  if (res.headersSent || res.destroyed) return void res.destroy();
  // The rest of a body still arriving would have to be read to find where the next request starts.
  if (!req.complete) res.setHeader('Connection', 'close');
  sendError(res, error);
}

/** A page of a foreign origin: refused before anything runs, and without CORS headers, so it reads nothing. */
function refuseOrigin(res: ServerResponse, origin: string): void {
  const body = new ApiError(403, `Pages from ${origin.slice(0, 200)} may not use this gateway; its operator can allow the origin (--allowed-origins).`, 'ERR_PERMISSION_DENIED').body();
  const payload = JSON.stringify(body);
  res.writeHead(403, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(payload)), Vary: 'Origin' });
  res.end(payload);
}
