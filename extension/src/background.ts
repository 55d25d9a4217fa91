// The service worker: keeps the engine's offscreen document and its contribution in line with the
// stored settings, relays pages' window.aigrid calls to the engine after the origin's permission,
// and answers the popup. Its state lives in chrome.storage.local, so each start restores it.
import { PAGE_PORT, STORAGE, isControlMessage } from './protocol.ts';
import { IDLE_AFTER_S, configForEngine, extensionState, reconcile } from './background/contribution-control.ts';
import { relayPage } from './background/page-relay.ts';

const ALARM = 'aigrid-reconcile';

chrome.idle.setDetectionInterval(IDLE_AFTER_S);
chrome.idle.onStateChanged.addListener(() => void reconcile());
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === 'local' && (STORAGE.settings in changes || STORAGE.enabled in changes)) void reconcile();
});
chrome.runtime.onStartup.addListener(() => void reconcile());
chrome.runtime.onInstalled.addListener(() => void reconcile());
chrome.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name === ALARM) void reconcile();
});
void chrome.alarms.get(ALARM).then(async (alarm) => {
  if (!alarm) await chrome.alarms.create(ALARM, { periodInMinutes: 1 });
});

chrome.runtime.onMessage.addListener((message: unknown, _sender, sendResponse) => {
  if (!isControlMessage(message, 'background')) return false;
  const reply = message.type === 'engine-ready' ? configForEngine() : message.type === 'state' ? extensionState() : reconcile().then(() => null);
  reply.then(sendResponse, (err: Error) => sendResponse({ error: err.message }));
  return true;
});

chrome.runtime.onConnect.addListener((port) => {
  if (port.name === PAGE_PORT) relayPage(port);
});

// Every start of the worker (install, browser start, or a wake-up after it was stopped).
void reconcile();
