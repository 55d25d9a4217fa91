// The engine's side of pages' calls: one Port per page (relayed by the service worker once the
// page's origin is allowed). Each call runs on the SDK's Grid with its own AbortController; an
// abort from the page, or the page going away (the Port disconnects), aborts the SDK request, which
// releases its sessions on every peer. Streams are sent chunk by chunk; errors as {name, code, message}.
import { AigridError } from '../../../protocol/errors.ts';
import type { Grid } from '../../../client/sdk/index.ts';
import type { ChatCompletionCreateParams, CompletionCreateParams, GenerateParams, Stream } from '../../../client/sdk/types.ts';
import { KEEPALIVE_MS, isPageMessage, toWireError, type CallMessage, type KeepAliveMessage, type ReplyMessage } from '../protocol.ts';

export function serveCalls(port: chrome.runtime.Port, grid: () => Promise<Grid>): void {
  const running = new Map<number, AbortController>();
  let open = true;
  let keepAlive: ReturnType<typeof setInterval> | undefined;

  const send = (message: ReplyMessage | KeepAliveMessage) => {
    if (open) port.postMessage(message);
  };
  const idle = () => {
    if (running.size > 0 || keepAlive === undefined) return;
    clearInterval(keepAlive);
    keepAlive = undefined;
  };

  port.onMessage.addListener((message: unknown) => {
    if (!isPageMessage(message)) return;
    if (message.type === 'abort') {
      running.get(message.id)?.abort();
      return;
    }
    if (running.has(message.id)) {
      send({ type: 'error', id: message.id, error: new AigridError('ERR_INVALID_MESSAGE', `call ${message.id} is already running`).toJSON() });
      return;
    }
    const controller = new AbortController();
    running.set(message.id, controller);
    keepAlive ??= setInterval(() => send({ type: 'keepalive' }), KEEPALIVE_MS);
    run(message, controller.signal, send, grid)
      .catch((err: unknown) => send({ type: 'error', id: message.id, error: toWireError(err) }))
      .finally(() => {
        running.delete(message.id);
        idle();
      });
  });

  port.onDisconnect.addListener(() => {
    open = false;
    for (const controller of running.values()) controller.abort();
    running.clear();
    clearInterval(keepAlive);
  });
}

function objectParams<T>(call: CallMessage): T {
  const params = call.params;
  if (!params || typeof params !== 'object' || Array.isArray(params)) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${call.method}() takes one object of request fields`);
  }
  return params as T;
}

async function run(call: CallMessage, signal: AbortSignal, send: (m: ReplyMessage) => void, grid: () => Promise<Grid>): Promise<void> {
  const { id } = call;
  const g = await grid();
  if (signal.aborted) throw new AigridError('ERR_ABORTED', 'the request was aborted before it started');
  switch (call.method) {
    case 'models.list':
      return send({ type: 'result', id, value: await g.models.list() });
    case 'models.retrieve':
      if (typeof call.params !== 'string') throw new AigridError('ERR_INVALID_ARGUMENT', 'models.retrieve() takes a model id');
      return send({ type: 'result', id, value: await g.models.retrieve(call.params) });
    case 'chat.completions.create':
    case 'completions.create': {
      const params = objectParams<ChatCompletionCreateParams & CompletionCreateParams>(call);
      const reply =
        call.method === 'chat.completions.create'
          ? await g.chat.completions.create(params, { signal })
          : await g.completions.create(params, { signal });
      if (!params.stream) return send({ type: 'result', id, value: reply });
      send({ type: 'result', id, value: null, stream: true });
      for await (const chunk of reply as Stream<unknown>) send({ type: 'chunk', id, chunk });
      return send({ type: 'end', id });
    }
    case 'generate': {
      const params = objectParams<GenerateParams>(call);
      const onToken = call.tokens ? (token: number, step: number) => send({ type: 'token', id, token, step }) : undefined;
      return send({ type: 'result', id, value: await g.generate({ ...params, signal, onToken }) });
    }
  }
}
