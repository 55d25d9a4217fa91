// The isolated content script: carries the page's calls (window.postMessage from the provider) to
// the service worker over one Port, opened on the first call, and the replies back. The service
// worker learns the page's origin from the Port itself, so a page cannot claim another origin.
import { PAGE_PORT, WINDOW_CHANNEL, isPageMessage, isReplyMessage, type ReplyMessage, type WindowEnvelope } from '../protocol.ts';

let port: chrome.runtime.Port | null = null;

function toPage(message: WindowEnvelope['message']): void {
  const envelope: WindowEnvelope = { channel: WINDOW_CHANNEL, to: 'page', message };
  window.postMessage(envelope, window.location.origin);
}

function open(): chrome.runtime.Port {
  const p = chrome.runtime.connect({ name: PAGE_PORT });
  p.onMessage.addListener((message: unknown) => {
    if (isReplyMessage(message)) toPage(message);
  });
  p.onDisconnect.addListener(() => {
    if (port === p) port = null;
    toPage({ type: 'disconnected' });
  });
  return p;
}

window.addEventListener('message', (event: MessageEvent) => {
  if (event.source !== window) return;
  const data = event.data as Partial<WindowEnvelope> | null;
  if (data?.channel !== WINDOW_CHANNEL || data.to !== 'extension' || !isPageMessage(data.message)) return;
  const message = data.message;
  try {
    port ??= open();
    // Whether the person just clicked or typed in the page: read here, in the isolated world, so
    // the page cannot claim it (whatever it put in the message is overwritten).
    port.postMessage(message.type === 'call' ? { ...message, gesture: navigator.userActivation?.isActive === true } : message);
  } catch (err) {
    // The extension was reloaded or removed: this content script can no longer reach it.
    port = null;
    if (message.type === 'call') {
      const reply: ReplyMessage = { type: 'error', id: message.id, error: { name: 'AigridError', code: 'ERR_PEER_CLOSED', message: `the AIGrid extension is not reachable (${(err as Error).message}); reload the page` } };
      toPage(reply);
    }
  }
});
