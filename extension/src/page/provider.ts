// window.aigrid in pages (a content script in the page's own world, run at document_start): the
// SDK's request interface, each call posted to the extension's isolated content script, which
// passes it on to the engine. The first call from an origin asks the person for permission.
import { AigridError } from '../../../protocol/errors.ts';
import type { GenerateParams } from '../../../client/sdk/types.ts';
import { READY_EVENT, WINDOW_CHANNEL, isReplyMessage, type AigridProvider, type PageMessage, type WindowEnvelope } from '../protocol.ts';
import { Calls } from './calls.ts';

declare const __AIGRID_VERSION__: string;

const calls = new Calls((message: PageMessage) => {
  const envelope: WindowEnvelope = { channel: WINDOW_CHANNEL, to: 'extension', message };
  window.postMessage(envelope, window.location.origin);
});

window.addEventListener('message', (event: MessageEvent) => {
  if (event.source !== window) return;
  const data = event.data as Partial<WindowEnvelope> | null;
  if (data?.channel !== WINDOW_CHANNEL || data.to !== 'page') return;
  if (data.message?.type === 'disconnected') calls.disconnected();
  else if (isReplyMessage(data.message)) calls.receive(data.message);
});

const isStream = (params: unknown) => Boolean((params as { stream?: unknown } | null)?.stream);

const provider: AigridProvider = {
  provider: 'aigrid-extension',
  version: __AIGRID_VERSION__,
  AigridError,
  models: {
    list: () => calls.call('models.list', undefined) as never,
    retrieve: (id: string) => calls.call('models.retrieve', id) as never,
  },
  chat: {
    completions: {
      create: ((params: unknown, options?: { signal?: AbortSignal }) => calls.call('chat.completions.create', params, { signal: options?.signal, stream: isStream(params) })) as never,
    },
  },
  completions: {
    create: ((params: unknown, options?: { signal?: AbortSignal }) => calls.call('completions.create', params, { signal: options?.signal, stream: isStream(params) })) as never,
  },
  generate: (params: GenerateParams) => {
    const { onToken, signal, ...rest } = params ?? ({} as GenerateParams);
    return calls.call('generate', rest, { signal, onToken }) as never;
  },
};

Object.defineProperty(window, 'aigrid', { value: Object.freeze(provider), configurable: true, enumerable: true, writable: true });
window.dispatchEvent(new Event(READY_EVENT));
