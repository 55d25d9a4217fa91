// Per-origin permission for window.aigrid. An origin without a decision may open the prompt (a
// small window of the extension, permission.html, with Allow and Deny) only from a call made
// during a user gesture in the page, so a page cannot pop windows at will. One prompt per origin
// at a time; calls meanwhile share it. The prompt stores the person's decision in
// chrome.storage.local, where the options page lists it and can revoke it. Closing the prompt
// without deciding means "not now": calls from that origin are refused without a prompt for a
// wait that doubles with each dismissal (30 s, 1 min, ... up to 1 h). When every page that waits
// on a prompt goes away, the prompt closes with no decision and no wait.
import { STORAGE, type OriginRecord } from '../protocol.ts';
import { readDecision } from '../settings.ts';

/** Why a call passes or not. */
export type Verdict = 'allow' | 'deny' | 'no-gesture' | 'not-now' | 'gone';

interface Prompt {
  answer: Promise<Verdict>;
  /** Pages waiting on it; at 0 the prompt is withdrawn. */
  waiting: number;
  withdraw: () => void;
}

const FIRST_WAIT_MS = 30_000;
const LONGEST_WAIT_MS = 60 * 60_000;
const prompts = new Map<string, Prompt>();
/** Origins whose prompt was dismissed: how often, and until when they are not asked again. */
const snoozed = new Map<string, { count: number; until: number }>();
/** Dismissals remembered (oldest forgotten first): one per origin the person dismissed. */
const MAX_SNOOZED = 256;

/** How long an origin is not asked again after its `count`-th dismissal. */
export function snoozeMs(count: number): number {
  return Math.min(LONGEST_WAIT_MS, FIRST_WAIT_MS * 2 ** Math.max(0, count - 1));
}

/** Whether a call of an origin may run, asking the person when the call came with a gesture. */
export async function verdict(origin: string, call: { gesture: boolean; signal: AbortSignal }): Promise<Verdict> {
  const record = await readDecision(origin);
  if (record) return record.decision;
  let prompt = prompts.get(origin);
  if (!prompt) {
    if ((snoozed.get(origin)?.until ?? 0) > Date.now()) return 'not-now';
    if (!call.gesture) return 'no-gesture';
    prompt = ask(origin);
    prompts.set(origin, prompt);
    const current = prompt;
    void prompt.answer.finally(() => {
      if (prompts.get(origin) === current) prompts.delete(origin);
    });
  }
  const shared = prompt;
  shared.waiting++;
  const leave = () => {
    if (--shared.waiting === 0) shared.withdraw();
  };
  if (call.signal.aborted) leave();
  else call.signal.addEventListener('abort', leave, { once: true });
  return shared.answer.finally(() => call.signal.removeEventListener('abort', leave));
}

function ask(origin: string): Prompt {
  const key = `${STORAGE.originPrefix}${origin}`;
  let finish!: (verdict: Verdict) => void;
  const answer = new Promise<Verdict>((resolve) => (finish = resolve));
  let windowId: number | undefined;
  let withdrawn = false;

  const onChanged = (changes: Record<string, chrome.storage.StorageChange>, area: string) => {
    const record = changes[key]?.newValue as OriginRecord | undefined;
    if (area === 'local' && record) done(record.decision);
  };
  const onRemoved = (id: number) => {
    if (id !== windowId) return;
    // The prompt stores the decision before it closes itself; read it in case that event comes later.
    void readDecision(origin).then((record) => done(record?.decision ?? (withdrawn ? 'gone' : dismissed(origin))));
  };
  const done = (verdict: Verdict) => {
    chrome.storage.onChanged.removeListener(onChanged);
    chrome.windows.onRemoved.removeListener(onRemoved);
    if (verdict === 'allow' || verdict === 'deny') snoozed.delete(origin);
    finish(verdict);
  };
  chrome.storage.onChanged.addListener(onChanged);
  chrome.windows.onRemoved.addListener(onRemoved);

  const url = chrome.runtime.getURL(`permission.html?origin=${encodeURIComponent(origin)}`);
  const opened = chrome.windows.create({ url, type: 'popup', width: 460, height: 340, focused: true }).then(
    (win) => {
      windowId = win?.id;
      if (withdrawn && windowId !== undefined) void chrome.windows.remove(windowId).catch(() => {});
    },
    () => done('not-now'), // no window can be opened (e.g. no display): refuse, remember nothing
  );
  const withdraw = () => {
    withdrawn = true;
    void opened.then(() => (windowId !== undefined ? chrome.windows.remove(windowId).catch(() => done('gone')) : undefined));
  };
  return { answer, waiting: 0, withdraw };
}

/** A prompt closed without a decision: the origin waits longer each time before it may ask again. */
function dismissed(origin: string): Verdict {
  const count = (snoozed.get(origin)?.count ?? 0) + 1;
  snoozed.delete(origin); // re-inserted as the newest
  snoozed.set(origin, { count, until: Date.now() + snoozeMs(count) });
  if (snoozed.size > MAX_SNOOZED) snoozed.delete(snoozed.keys().next().value!);
  return 'not-now';
}
