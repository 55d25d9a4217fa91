// The service worker's part in a page's call: the page's Port (from the content script) is paired
// with a Port to the engine, and each call passes only when the page's origin is allowed. The
// origin comes from the Port's sender, which the browser sets, never from the page's message.
import { AigridError } from '../../../protocol/errors.ts';
import { ENGINE_PORT, PERMISSION_DENIED, isPageMessage, isReplyMessage, pageOriginAllowed, type CallMessage, type ReplyMessage } from '../protocol.ts';
import { ensureEngine } from './offscreen-document.ts';
import { verdict, type Verdict } from './permission-prompt.ts';

/** The page's origin, for https pages and plain-http pages of this machine only. */
function originOf(sender: chrome.runtime.MessageSender | undefined): string | null {
  const origin = sender?.origin ?? (sender?.url ? new URL(sender.url).origin : undefined);
  return origin && pageOriginAllowed(origin) ? origin : null;
}

/** Why a call of `origin` was refused, as the page reads it. */
function refusal(origin: string, why: Exclude<Verdict, 'allow'>): string {
  switch (why) {
    case 'deny':
      return `${origin} may not use AIGrid through this extension: the person did not allow it (they can change that in the extension's options)`;
    case 'no-gesture':
      return `${origin} may not use AIGrid through this extension yet: a site asks for permission from a click or key press in the page (call window.aigrid from its handler)`;
    case 'not-now':
      return `${origin} may not use AIGrid through this extension now: the person closed its permission prompt; it may ask again later`;
    case 'gone':
      return `${origin}'s permission prompt was withdrawn: the page that asked went away`;
  }
}

export function relayPage(page: chrome.runtime.Port): void {
  const origin = originOf(page.sender);
  let engine: Promise<chrome.runtime.Port> | null = null;
  let open = true;
  /** Aborted when the page goes away: a prompt nobody waits for any more is withdrawn. */
  const gone = new AbortController();
  /** Calls waiting for the person's decision, and those of them the page gave up on meanwhile. */
  const waiting = new Set<number>();
  const abandoned = new Set<number>();

  const toPage = (message: ReplyMessage) => {
    if (open) page.postMessage(message);
  };
  const refuse = (id: number, err: AigridError) => toPage({ type: 'error', id, error: err.toJSON() });

  const connectEngine = async (): Promise<chrome.runtime.Port> => {
    await ensureEngine();
    const port = chrome.runtime.connect({ name: ENGINE_PORT });
    port.onMessage.addListener((message: unknown) => {
      if (isReplyMessage(message)) toPage(message); // keep-alives stop here: they only keep this worker awake
    });
    // The engine went away (its document closed): the page's calls cannot finish; it is told so.
    port.onDisconnect.addListener(() => page.disconnect());
    return port;
  };

  const admit = async (call: CallMessage) => {
    if (!origin) return refuse(call.id, new AigridError(PERMISSION_DENIED, 'window.aigrid serves https pages, and plain-http pages of this machine (localhost) only'));
    const why = await verdict(origin, { gesture: call.gesture === true, signal: gone.signal });
    if (why !== 'allow') return refuse(call.id, new AigridError(PERMISSION_DENIED, refusal(origin, why)));
    if (!engine) {
      const connecting = connectEngine();
      engine = connecting;
      connecting.catch(() => {
        if (engine === connecting) engine = null; // the next call tries again
      });
    }
    const port = await engine;
    waiting.delete(call.id); // from here on an abort goes to the engine, after this call
    if (abandoned.delete(call.id)) return refuse(call.id, new AigridError('ERR_ABORTED', 'the request was aborted before it started'));
    if (open) port.postMessage(call);
  };

  page.onMessage.addListener((message: unknown) => {
    if (!isPageMessage(message)) return;
    if (message.type === 'abort') {
      if (waiting.has(message.id)) abandoned.add(message.id);
      else void engine?.then((port) => port.postMessage(message));
      return;
    }
    waiting.add(message.id);
    admit(message)
      .catch((err: unknown) => refuse(message.id, new AigridError('ERR_PEER_CLOSED', `the AIGrid engine could not start: ${(err as Error).message}`)))
      .finally(() => {
        waiting.delete(message.id);
        abandoned.delete(message.id);
      });
  });

  page.onDisconnect.addListener(() => {
    open = false;
    gone.abort();
    void engine?.then((port) => port.disconnect(), () => {});
  });
}
