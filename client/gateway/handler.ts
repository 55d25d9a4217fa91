// The OpenAI-compatible routes over a Grid: GET /v1/models, GET /v1/models/:id,
// POST /v1/chat/completions and POST /v1/completions. The handler takes every request under /v1
// and answers false for the rest, so it mounts beside other routes (the signaling server's mount).
// Whatever arrives, it answers once or closes the connection; nothing thrown escapes it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Grid } from '../sdk/grid.ts';
import type { ChatCompletion, ChatCompletionChunk, Completion, CompletionChunk, Stream } from '../sdk/types.ts';
import { bearerCheck } from './auth.ts';
import { ClientGone, readJsonBody } from './body.ts';
import { ApiError, apiErrorOf } from './errors.ts';
import { chatParams, completionParams } from './params.ts';
import { sendError, sendJson, sendPreflight } from './respond.ts';
import { sendSse } from './sse.ts';
import { originAllowed, type AllowedOrigins } from '../../protocol/index.ts';

/** What the gateway uses of a Grid (any object with these works, e.g. a wrapper that counts). */
export type GatewayGrid = Pick<Grid, 'models' | 'chat' | 'completions'>;

export interface GatewayOptions {
  /** When set, every request needs `Authorization: Bearer <apiKey>` (preflights excepted). */
  apiKey?: string;
  /** Largest request body (default 1 MiB); larger ones are answered 413. */
  maxBodyBytes?: number;
  /** Longest a request body may take to arrive (default 30 s); slower ones are answered 408. */
  bodyTimeoutMs?: number;
  /** Longest a stream waits on a client that reads nothing (default 60 s); then it is dropped. */
  writeTimeoutMs?: number;
  /** Where failures that are the gateway's own (500s) are told. */
  log?: (line: string) => void;
  /** Page origins allowed besides loopback pages and extensions (protocol/origins.ts); `*` for any. */
  allowedOrigins?: AllowedOrigins;
  /** Whether the server it is mounted on listens on loopback only (default true: the strict rule). */
  loopbackBound?: boolean;
}

type Reply = ChatCompletion | Completion | Stream<ChatCompletionChunk> | Stream<CompletionChunk>;

export type GatewayHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

interface Route {
  methods: string[];
  run: (ctx: Context) => Promise<void>;
}

interface Context {
  req: IncomingMessage;
  res: ServerResponse;
  grid: GatewayGrid;
  /** Aborted when the client goes away before its answer is complete. */
  signal: AbortSignal;
  options: Required<Omit<GatewayOptions, 'apiKey' | 'allowedOrigins' | 'loopbackBound'>>;
  modelId?: string;
}

export function createGatewayHandler(grid: GatewayGrid, options: GatewayOptions = {}): GatewayHandler {
  const settings = {
    maxBodyBytes: options.maxBodyBytes ?? 1 << 20,
    bodyTimeoutMs: options.bodyTimeoutMs ?? 30_000,
    writeTimeoutMs: options.writeTimeoutMs ?? 60_000,
    log: options.log ?? (() => {}),
  };
  const authorize = bearerCheck(options.apiKey);
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path !== '/v1' && !path.startsWith('/v1/')) return false;
    const origin = req.headers.origin;
    if (!originAllowed({ origin, host: req.headers.host, allowed: options.allowedOrigins, loopbackBound: options.loopbackBound ?? true })) {
      refuseOrigin(res, origin!);
      return true;
    }
    const controller = new AbortController();
    // A response closed before it finished means the client left: stop its generation on the peers.
    res.on('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    const ctx: Context = { req, res, grid, signal: controller.signal, options: settings };
    handle(ctx, path, authorize).catch((err: unknown) => answerError(ctx, err));
    return true;
  };
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

function routeOf(ctx: Context, path: string): Route | null {
  if (path === '/v1/models') return { methods: ['GET', 'HEAD'], run: listModels };
  if (path.startsWith('/v1/models/')) {
    // Ids may hold a slash (Hugging Face ids): clients send it encoded or not.
    ctx.modelId = decodePart(path.slice('/v1/models/'.length));
    return { methods: ['GET', 'HEAD'], run: retrieveModel };
  }
  if (path === '/v1/chat/completions') return { methods: ['POST'], run: chatCompletions };
  if (path === '/v1/completions') return { methods: ['POST'], run: completions };
  return null;
}

async function listModels({ res, grid }: Context): Promise<void> {
  sendJson(res, 200, await grid.models.list());
}

async function retrieveModel({ res, grid, modelId }: Context): Promise<void> {
  sendJson(res, 200, await grid.models.retrieve(modelId ?? ''));
}

async function chatCompletions(ctx: Context): Promise<void> {
  const params = chatParams(await body(ctx));
  const reply = await ctx.grid.chat.completions.create(params, { signal: ctx.signal });
  await answer(ctx, reply);
}

async function completions(ctx: Context): Promise<void> {
  const params = completionParams(await body(ctx));
  const reply = await ctx.grid.completions.create(params, { signal: ctx.signal });
  await answer(ctx, reply);
}

function body(ctx: Context): Promise<unknown> {
  return readJsonBody(ctx.req, { maxBytes: ctx.options.maxBodyBytes, timeoutMs: ctx.options.bodyTimeoutMs });
}

/** A whole reply as JSON, a streamed one (it has a controller) as server-sent events. */
async function answer(ctx: Context, reply: Reply): Promise<void> {
  if (!('controller' in reply)) return sendJson(ctx.res, 200, reply);
  await sendSse(ctx.res, reply, {
    writeTimeoutMs: ctx.options.writeTimeoutMs,
    onError: (err) => (ctx.signal.aborted ? null : toApiError(ctx, err)),
  });
}

function answerError(ctx: Context, err: unknown): void {
  const { res } = ctx;
  if (err instanceof ClientGone || ctx.signal.aborted || res.destroyed) return void res.destroy();
  const error = toApiError(ctx, err);
  if (res.headersSent) return void res.destroy();
  sendError(res, error);
}

function toApiError(ctx: Context, err: unknown): ApiError {
  const { error, internal } = apiErrorOf(err);
  if (internal) ctx.options.log(`gateway: ${ctx.req.method} ${ctx.req.url?.slice(0, 200)} failed: ${(err as Error)?.stack ?? String(err)}`);
  return error;
}

function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** A page of a foreign origin: refused before anything runs, and without CORS headers, so it reads nothing. */
function refuseOrigin(res: ServerResponse, origin: string): void {
  const body = new ApiError(403, `Pages from ${origin.slice(0, 200)} may not use this gateway; its operator can allow the origin (--allowed-origins).`, 'ERR_PERMISSION_DENIED').body();
  const payload = JSON.stringify(body);
  res.writeHead(403, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(payload)), Vary: 'Origin' });
  res.end(payload);
}
