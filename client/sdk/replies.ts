// Runs one completion on a model and shapes what comes out as OpenAI does: a whole reply, or a
// stream of chunks. Text is decoded as tokens arrive (TextStream holds back partial characters and
// possible stop strings). An abort (the caller's signal, stream.controller, or leaving the loop
// early) ends the reply at once and releases the session on every hop.
import { AigridError } from '../../protocol/index.ts';
import type { ModelClient, RunResult } from './model-client.ts';
import type { Sampling } from './request.ts';
import { TextStream } from './text-stream.ts';
import type { FinishReason, GridReplyInfo, Stream, Usage } from './types.ts';

export type ReplyKind = 'chat' | 'text';

export interface ReplyRequest {
  kind: ReplyKind;
  client: ModelClient;
  model: string;
  prompt: number[];
  sampling: Sampling;
  includeUsage: boolean;
  signal?: AbortSignal;
}

export interface WholeReply {
  id: string;
  created: number;
  text: string;
  finishReason: FinishReason;
  usage: Usage;
  info: GridReplyInfo;
}

const abortError = () => new AigridError('ERR_ABORTED', 'the request was aborted; its session was released on every peer');

export function replyId(kind: ReplyKind): string {
  const rand = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');
  return `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${rand}`;
}

const now = () => Math.floor(Date.now() / 1000);

/** Starts the generation, which `signal` aborts; `onText` hears each new piece of text. */
function start(req: ReplyRequest, signal: AbortSignal | undefined, onText: (text: string) => void): Promise<{ result: RunResult; stopped: boolean }> {
  const { client, sampling } = req;
  const text = new TextStream((ids) => client.decode(ids), sampling.stops);
  let stopped = false;
  const stopper = new AbortController(); // a stop string was generated
  return client
    .generate(req.prompt, {
      ...sampling,
      stopTokens: client.config.eosTokenIds,
      signal: signal ? AbortSignal.any([signal, stopper.signal]) : stopper.signal,
      onToken: (token) => {
        const delta = text.push(token);
        if (delta.text) onText(delta.text);
        if (delta.stopped) {
          stopped = true;
          stopper.abort();
        }
      },
    })
    .then((result) => {
      if (!stopped) {
        const rest = text.flush();
        if (rest) onText(rest);
      }
      return { result, stopped };
    });
}

function finishOf(result: RunResult, stopped: boolean): FinishReason {
  return stopped || result.finishReason === 'stop' ? 'stop' : 'length';
}

function usageOf(req: ReplyRequest, result: RunResult): Usage {
  return { prompt_tokens: req.prompt.length, completion_tokens: result.tokens.length, total_tokens: req.prompt.length + result.tokens.length };
}

/** Rejects at once when `signal` aborts (the generation behind it stops at its next step). */
function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(abortError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError());
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export async function wholeReply(req: ReplyRequest): Promise<WholeReply> {
  let text = '';
  const created = now();
  const { result, stopped } = await abortable(start(req, req.signal, (piece) => (text += piece)), req.signal);
  return { id: replyId(req.kind), created, text, finishReason: finishOf(result, stopped), usage: usageOf(req, result), info: result.info };
}

/** Pieces of a streamed reply: text as it comes, then the end with the finish reason. */
export type StreamEvent = { type: 'text'; text: string } | { type: 'end'; finishReason: FinishReason; usage: Usage; info: GridReplyInfo };

/** A stream of chunks made by `shape` from the reply's events. */
export function streamReply<T>(req: ReplyRequest, shape: (event: StreamEvent | { type: 'start' }) => T[]): Stream<T> {
  const controller = new AbortController();
  const queue: StreamEvent[] = [];
  let failure: unknown = null;
  let ended = false;
  let wake: (() => void) | null = null;
  const notify = () => {
    wake?.();
    wake = null;
  };
  const signal = AbortSignal.any([controller.signal, ...(req.signal ? [req.signal] : [])]);
  const work = start(req, signal, (text) => {
    queue.push({ type: 'text', text });
    notify();
  });
  work.then(
    ({ result, stopped }) => {
      if (!stopped && result.finishReason === 'abort') failure ??= abortError();
      else queue.push({ type: 'end', finishReason: finishOf(result, stopped), usage: usageOf(req, result), info: result.info });
      ended = true;
      notify();
    },
    (err: unknown) => {
      failure ??= err;
      ended = true;
      notify();
    },
  );
  const onAbort = () => {
    if (!ended) failure ??= abortError();
    notify();
  };
  signal.addEventListener('abort', onAbort, { once: true });

  async function* chunks(): AsyncGenerator<T> {
    try {
      yield* shape({ type: 'start' });
      for (;;) {
        while (queue.length > 0) yield* shape(queue.shift()!);
        if (failure) throw failure;
        if (ended) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (!ended) controller.abort();
    }
  }
  return { controller, [Symbol.asyncIterator]: chunks };
}
