// The offscreen document (reason WORKERS): where the engine lives, because a service worker has
// neither WebGPU nor WebRTC. The service worker configures it and asks for its status with
// runtime messages, and relays pages' calls to it over Ports.
import { ENGINE_PORT, isControlMessage, type ControlMessage, type EngineConfig } from '../protocol.ts';
import { serveCalls } from './calls.ts';
import { Engine } from './engine.ts';

const engine = new Engine();

chrome.runtime.onMessage.addListener((message: unknown, _sender, sendResponse) => {
  if (!isControlMessage(message, 'engine')) return false;
  const m = message as ControlMessage & { to: 'engine' };
  if (m.type === 'configure') void engine.configure(m.config); // the status says how it goes
  sendResponse(engine.status());
  return false;
});

chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== ENGINE_PORT) return;
  engine.pageAttached(true);
  port.onDisconnect.addListener(() => engine.pageAttached(false));
  serveCalls(port, () => engine.requests());
});

// Asks the service worker for the settings: the document may have been (re)created by it, or by
// the browser restoring the extension.
const ready: ControlMessage = { to: 'background', type: 'engine-ready' };
chrome.runtime.sendMessage(ready).then((config) => {
  if (config) return engine.configure(config as EngineConfig);
}, () => {});
