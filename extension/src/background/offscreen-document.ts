// The offscreen document that holds the engine: created when something needs it (contribution on,
// or a page's call), once even when asked for twice at the same time, and found again after the
// service worker restarts (the document outlives it).
import type { ControlMessage, EngineStatus } from '../protocol.ts';

const PATH = 'offscreen.html';
let creating: Promise<void> | null = null;

export async function hasEngine(): Promise<boolean> {
  const contexts = await chrome.runtime.getContexts({ contextTypes: ['OFFSCREEN_DOCUMENT'], documentUrls: [chrome.runtime.getURL(PATH)] });
  return contexts.length > 0;
}

export async function ensureEngine(): Promise<void> {
  if (await hasEngine()) return;
  creating ??= chrome.offscreen
    .createDocument({
      url: PATH,
      reasons: ['WORKERS'],
      justification: 'Runs the AIGrid engine: WebGPU compute for the layers this browser serves, and WebRTC links to the other peers.',
    })
    .finally(() => (creating = null));
  await creating;
}

/** Sends a control message to the engine; null when there is no engine to answer. */
export async function askEngine(message: ControlMessage & { to: 'engine' }): Promise<EngineStatus | null> {
  if (!(await hasEngine())) return null;
  try {
    return ((await chrome.runtime.sendMessage(message)) as EngineStatus | undefined) ?? null;
  } catch {
    return null; // the document is still loading its script, or just went away
  }
}
