// A streamed reply as OpenAI sends it: server-sent events, one `data: {chunk}\n\n` per chunk and
// `data: [DONE]\n\n` at the end; a failure after the first event is a last `data: {"error":...}`.
// The status line waits for the first chunk that carries text or an ending, so a request that
// fails before generating anything (no route, prompt too long) still gets its HTTP error status.
import type { ServerResponse } from 'node:http';
import { untilAborted } from './abort.ts';
import type { ApiError } from './errors.ts';
import { CORS_HEADERS, sendError } from './respond.ts';

interface ChunkLike {
  choices: { delta?: { content?: string }; text?: string; finish_reason: string | null }[];
  usage?: unknown;
}

export interface SseOptions {
  /** Longest wait for a client that reads nothing while its socket buffer is full. */
  writeTimeoutMs: number;
  /** Ends the stream where it is (the gateway's deadline or shutdown): onError hears the signal's reason. */
  signal: AbortSignal;
  /** The error to answer with (before the first event as an HTTP error, after it as an event), or null to just close. */
  onError: (err: unknown) => ApiError | null;
}

const SSE_HEADERS = {
  ...CORS_HEADERS,
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache',
  // Tells nginx-style proxies not to buffer the stream, so tokens reach the client as they come.
  'X-Accel-Buffering': 'no',
};

/** Writes the stream; resolves when it ended, failed, or the client left (the caller aborts then). */
export async function sendSse(res: ServerResponse, chunks: AsyncIterable<ChunkLike>, options: SseOptions): Promise<void> {
  const held: ChunkLike[] = [];
  const flush = async () => {
    if (!res.headersSent) res.writeHead(200, SSE_HEADERS);
    for (const c of held.splice(0)) await write(res, event(c), options.writeTimeoutMs);
  };
  const iterator = chunks[Symbol.asyncIterator]();
  try {
    // Each wait for a chunk also ends on the signal, so a generation that stalls cannot hold the stream past it.
    for (;;) {
      const step = await untilAborted(iterator.next(), options.signal);
      if (step.done) break;
      if (res.destroyed) return void stop(iterator);
      held.push(step.value);
      if (res.headersSent || carries(step.value)) await flush();
    }
    await flush();
    await write(res, 'data: [DONE]\n\n', options.writeTimeoutMs);
    res.end();
  } catch (err) {
    stop(iterator);
    if (err instanceof ClientLost) return void res.destroy();
    if (res.destroyed) return;
    const error = options.onError(err);
    if (!error) return void res.destroy();
    if (!res.headersSent) return sendError(res, error);
    res.end(event(error.body()));
  }
}

/** Ends the generation behind a stream we stop reading (the SDK's stream stops on every peer). */
function stop(iterator: AsyncIterator<unknown>): void {
  iterator.return?.().catch(() => {});
}

function carries(chunk: ChunkLike): boolean {
  return chunk.usage != null || chunk.choices.some((c) => c.finish_reason !== null || Boolean(c.delta?.content) || Boolean(c.text));
}

const event = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`;

class ClientLost extends Error {}

/** Writes, waiting for the socket to drain when its buffer is full (a slow reader slows us). */
function write(res: ServerResponse, text: string, timeoutMs: number): Promise<void> {
  if (res.destroyed) return Promise.reject(new ClientLost('the client left'));
  if (res.write(text)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const finish = (err: Error | null) => {
      clearTimeout(timer);
      res.off('drain', onDrain).off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => finish(null);
    const onClose = () => finish(new ClientLost('the client left'));
    const timer = setTimeout(() => finish(new ClientLost(`the client read nothing for ${timeoutMs} ms`)), timeoutMs);
    res.on('drain', onDrain).on('close', onClose);
  });
}
