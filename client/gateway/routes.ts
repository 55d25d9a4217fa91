// The OpenAI routes: GET /v1/models, GET /v1/models/:id, POST /v1/chat/completions and
// POST /v1/completions, POST /v1/embeddings; and AIGrid's POST /v1/vdags/:id/run and GET /v1/credits. A completion takes a turn (Admission: 429 past the queue), then its model
// (ModelDirectory: known, and its client current), then a start slot (Pacer: below the signaling
// server's rates), and only then reaches the grid.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Grid } from '../sdk/grid.ts';
import { checkPrompt, samplingOf, textMessages } from '../sdk/request.ts';
import type { ChatCompletion, ChatCompletionChunk, Completion, CompletionChunk, Stream } from '../sdk/types.ts';
import { untilAborted } from './abort.ts';
import type { Admission } from './admission.ts';
import { readJsonBody } from './body.ts';
import { ApiError, apiErrorOf } from './errors.ts';
import type { ModelDirectory } from './models.ts';
import type { Pacer } from './pacer.ts';
import { chatParams, completionParams, embeddingParams } from './params.ts';
import { checkEmbeddingParams } from '../sdk/embeddings.ts';
import { sendJson } from './respond.ts';
import type { Settings } from './settings.ts';
import { sendSse } from './sse.ts';

/**
 * What the gateway uses of a Grid (any object with these works, e.g. a wrapper that counts).
 * `releaseModel` lets it renew a model's cached client; `mesh` gives the server's rate limits.
 */
export type GatewayGrid = Pick<Grid, 'models' | 'chat' | 'completions'> &
  Partial<Pick<Grid, 'releaseModel' | 'vdags' | 'credits' | 'embeddings'>> & { mesh?: { signaling: { limits?: { messagesPerSecond: number } } } };

type Reply = ChatCompletion | Completion | Stream<ChatCompletionChunk> | Stream<CompletionChunk>;

/** What every request shares: the grid and the gateway's limits. */
export interface Shared {
  grid: GatewayGrid;
  settings: Settings;
  admission: Admission;
  models: ModelDirectory;
  pacer: Pacer;
}

export interface Context {
  req: IncomingMessage;
  res: ServerResponse;
  shared: Shared;
  /**
   * Aborted when the request must stop: its client left (reason ClientGone), or the gateway ends it
   * (reason the ApiError to answer: its deadline passed, or the gateway shut down).
   */
  signal: AbortSignal;
  modelId?: string;
  vdagId?: string;
}

interface Route {
  methods: string[];
  run: (ctx: Context) => Promise<void>;
}

export function routeOf(ctx: Context, path: string): Route | null {
  if (path === '/v1/models') return { methods: ['GET', 'HEAD'], run: listModels };
  if (path.startsWith('/v1/models/')) {
    // Ids may hold a slash (Hugging Face ids): clients send it encoded or not.
    ctx.modelId = decodePart(path.slice('/v1/models/'.length));
    return { methods: ['GET', 'HEAD'], run: retrieveModel };
  }
  if (path === '/v1/chat/completions') return { methods: ['POST'], run: chatCompletions };
  if (path === '/v1/completions') return { methods: ['POST'], run: completions };
  if (path === '/v1/credits') return { methods: ['GET', 'HEAD'], run: credits };
  if (path === '/v1/embeddings') return { methods: ['POST'], run: embeddings };
  const vdag = /^\/v1\/vdags\/([^/]+)\/run$/.exec(path);
  if (vdag) {
    ctx.vdagId = decodePart(vdag[1]!);
    return { methods: ['POST'], run: runVdag };
  }
  return null;
}

async function listModels({ res, shared, signal }: Context): Promise<void> {
  sendJson(res, 200, await untilAborted(shared.models.list(), signal));
}

async function retrieveModel({ res, shared, signal, modelId }: Context): Promise<void> {
  sendJson(res, 200, await untilAborted(shared.models.retrieve(modelId ?? ''), signal));
}

async function chatCompletions(ctx: Context): Promise<void> {
  const params = chatParams(await body(ctx));
  // The SDK's own checks, run before the request takes a turn: a bad request is told so, not 429.
  samplingOf(params);
  textMessages(params.messages);
  await generate(ctx, params.model, (signal) => ctx.shared.grid.chat.completions.create(params, { signal }));
}

async function completions(ctx: Context): Promise<void> {
  const params = completionParams(await body(ctx));
  samplingOf(params);
  checkPrompt(params.prompt);
  await generate(ctx, params.model, (signal) => ctx.shared.grid.completions.create(params, { signal }));
}

/** POST /v1/vdags/{id}/run with {"input": ...}: the vDAG run by the gateway's grid; its output and every node's. */
async function runVdag(ctx: Context): Promise<void> {
  const request = await body(ctx);
  if (typeof request !== 'object' || request === null || Array.isArray(request) || !('input' in request)) {
    throw new ApiError(400, 'The body must be a JSON object with the vDAG\'s "input".', 'invalid_request_error', 'input');
  }
  const { vdags } = ctx.shared.grid;
  if (!vdags) throw new ApiError(404, 'This gateway runs no vDAGs.', 'unknown_url');
  const { admission, pacer } = ctx.shared;
  const leave = await admission.enter(ctx.signal);
  try {
    await pacer.take(ctx.signal);
    const id = ctx.vdagId ?? '';
    const result = await untilAborted(vdags.run(id, (request as { input: unknown }).input, { signal: ctx.signal }), ctx.signal);
    sendJson(ctx.res, 200, { object: 'vdag.run', id, output: result.output, outputs: result.outputs });
  } finally {
    leave();
  }
}

/** POST /v1/embeddings: OpenAI's embeddings, from a feature-extraction pipeline block named as the model. */
async function embeddings(ctx: Context): Promise<void> {
  const params = embeddingParams(await body(ctx));
  checkEmbeddingParams(params); // a bad request is told so before it takes a turn
  const { embeddings } = ctx.shared.grid;
  if (!embeddings) throw new ApiError(404, 'This gateway computes no embeddings.', 'unknown_url');
  const { admission, pacer } = ctx.shared;
  const leave = await admission.enter(ctx.signal);
  try {
    await pacer.take(ctx.signal);
    sendJson(ctx.res, 200, await untilAborted(embeddings.create(params, { signal: ctx.signal }), ctx.signal));
  } finally {
    leave();
  }
}

/** GET /v1/credits: the gateway's own key's balance on its network, with the mode and prices. */
async function credits({ res, shared, signal }: Context): Promise<void> {
  if (!shared.grid.credits) throw new ApiError(404, 'This gateway keeps no credits.', 'unknown_url');
  sendJson(res, 200, { object: 'credits', ...(await untilAborted(shared.grid.credits.balance(), signal)) });
}

function body(ctx: Context): Promise<unknown> {
  const { maxBodyBytes, bodyTimeoutMs } = ctx.shared.settings;
  return untilAborted(readJsonBody(ctx.req, { maxBytes: maxBodyBytes, timeoutMs: bodyTimeoutMs }), ctx.signal);
}

async function generate(ctx: Context, modelId: string, create: (signal: AbortSignal) => Promise<Reply>): Promise<void> {
  const { admission, models, pacer } = ctx.shared;
  const leave = await admission.enter(ctx.signal);
  try {
    const use = models.use(modelId);
    const done = await untilAborted(use, ctx.signal, (end) => end());
    try {
      await pacer.take(ctx.signal);
      // A stream that arrives after the request ended is stopped at once.
      const reply = await untilAborted(create(ctx.signal), ctx.signal, (late) => {
        if ('controller' in late) late.controller.abort();
      });
      await answer(ctx, reply);
    } finally {
      done();
    }
  } finally {
    leave();
  }
}

/** A whole reply as JSON, a streamed one (it has a controller) as server-sent events. */
async function answer(ctx: Context, reply: Reply): Promise<void> {
  if (!('controller' in reply)) return sendJson(ctx.res, 200, reply);
  await sendSse(ctx.res, reply, {
    writeTimeoutMs: ctx.shared.settings.writeTimeoutMs,
    signal: ctx.signal,
    onError: (err) => endedWith(ctx) ?? (ctx.signal.aborted ? null : toApiError(ctx, err)),
  });
}

/** The error the gateway ended this request with (deadline, shutdown), if it did. */
export function endedWith(ctx: Context): ApiError | null {
  return ctx.signal.aborted && ctx.signal.reason instanceof ApiError ? ctx.signal.reason : null;
}

export function toApiError(ctx: Context, err: unknown): ApiError {
  const { error, internal } = apiErrorOf(err);
  if (internal) ctx.shared.settings.log(`gateway: ${ctx.req.method} ${ctx.req.url?.slice(0, 200)} failed: ${(err as Error)?.stack ?? String(err)}`);
  return error;
}

function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}
