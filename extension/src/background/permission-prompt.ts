// Per-origin permission for window.aigrid: an origin's first call opens a small window of the
// extension (permission.html) with Allow and Deny. The prompt stores the person's decision in
// chrome.storage.local, where the options page lists it and can revoke it. Closing the prompt
// without deciding refuses that call and remembers nothing.
import { STORAGE, type OriginRecord } from '../protocol.ts';
import { readDecision } from '../settings.ts';

const asking = new Map<string, Promise<boolean>>();

/** Whether an origin may call the engine, asking the person when it has no decision yet. */
export async function allowed(origin: string): Promise<boolean> {
  const record = await readDecision(origin);
  if (record) return record.decision === 'allow';
  let answer = asking.get(origin);
  if (!answer) {
    answer = ask(origin).finally(() => asking.delete(origin));
    asking.set(origin, answer);
  }
  return answer;
}

async function ask(origin: string): Promise<boolean> {
  const key = `${STORAGE.originPrefix}${origin}`;
  let finish!: (allow: boolean) => void;
  const answer = new Promise<boolean>((resolve) => (finish = resolve));
  let windowId: number | undefined;

  const onChanged = (changes: Record<string, chrome.storage.StorageChange>, area: string) => {
    const record = changes[key]?.newValue as OriginRecord | undefined;
    if (area === 'local' && record) done(record.decision === 'allow');
  };
  const onRemoved = (id: number) => {
    if (id !== windowId) return;
    // The prompt stores the decision before it closes itself; read it in case that event comes later.
    void readDecision(origin).then((record) => done(record?.decision === 'allow'));
  };
  const done = (allow: boolean) => {
    chrome.storage.onChanged.removeListener(onChanged);
    chrome.windows.onRemoved.removeListener(onRemoved);
    finish(allow);
  };
  chrome.storage.onChanged.addListener(onChanged);
  chrome.windows.onRemoved.addListener(onRemoved);

  const url = chrome.runtime.getURL(`permission.html?origin=${encodeURIComponent(origin)}`);
  try {
    const win = await chrome.windows.create({ url, type: 'popup', width: 460, height: 340, focused: true });
    windowId = win?.id;
  } catch {
    done(false); // no window can be opened (e.g. no display): refuse, remember nothing
  }
  return answer;
}
