// What the extension remembers in chrome.storage.local: the settings, whether contribution is on,
// and each origin's permission. The service worker, the popup, the options page and the permission
// prompt all read and write it here; the service worker reacts to changes (storage.onChanged).
import { DEFAULT_SETTINGS, STORAGE, checkSettings, type OriginDecision, type OriginRecord, type Settings } from './protocol.ts';

export async function readSettings(): Promise<Settings> {
  const stored = (await chrome.storage.local.get(STORAGE.settings))[STORAGE.settings] as Partial<Settings> | undefined;
  return { ...DEFAULT_SETTINGS, ...stored };
}

/** Merges and stores settings; throws with the reason when a value is out of range. */
export async function writeSettings(patch: Partial<Settings>): Promise<Settings> {
  const problem = checkSettings(patch);
  if (problem) throw new Error(problem);
  const settings = { ...(await readSettings()), ...patch };
  await chrome.storage.local.set({ [STORAGE.settings]: settings });
  return settings;
}

export async function readEnabled(): Promise<boolean> {
  return (await chrome.storage.local.get(STORAGE.enabled))[STORAGE.enabled] === true;
}

export async function writeEnabled(enabled: boolean): Promise<void> {
  await chrome.storage.local.set({ [STORAGE.enabled]: enabled });
}

const originKey = (origin: string) => `${STORAGE.originPrefix}${origin}`;

export async function readDecision(origin: string): Promise<OriginRecord | undefined> {
  return (await chrome.storage.local.get(originKey(origin)))[originKey(origin)] as OriginRecord | undefined;
}

/** Every origin the person has decided on, with the decision. */
export async function readOrigins(): Promise<Map<string, OriginRecord>> {
  const all = await chrome.storage.local.get(null);
  const origins = new Map<string, OriginRecord>();
  for (const [key, value] of Object.entries(all)) {
    if (key.startsWith(STORAGE.originPrefix)) origins.set(key.slice(STORAGE.originPrefix.length), value as OriginRecord);
  }
  return origins;
}

export async function decide(origin: string, decision: OriginDecision): Promise<void> {
  const record: OriginRecord = { decision, at: Date.now() };
  await chrome.storage.local.set({ [originKey(origin)]: record });
}

/** Forgets an origin's decision: its next call asks the person again. */
export async function revoke(origin: string): Promise<void> {
  await chrome.storage.local.remove(originKey(origin));
}
