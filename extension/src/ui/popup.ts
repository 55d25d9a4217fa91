// The popup: the on/off switch, the memory budget, the idle and AC-power conditions, and what the
// engine does now (assignment, tokens served, network, signaling URL, peer id). Changes go to
// chrome.storage.local, where the service worker picks them up; the status is read twice a second.
import type { ControlMessage, ExtensionState } from '../protocol.ts';
import { describePower, watchPower } from '../power.ts';
import { writeEnabled, writeSettings } from '../settings.ts';
import { $, cells } from './dom.ts';

const enabled = $<HTMLInputElement>('enabled');
const memory = $<HTMLInputElement>('memory');
const onlyIdle = $<HTMLInputElement>('only-idle');
const onlyAc = $<HTMLInputElement>('only-ac');
const error = $('error');
/** Why the last change was refused, shown until a change succeeds. */
let refused = '';

function act(change: Promise<unknown>): void {
  change.then(
    () => {
      refused = '';
      return refresh();
    },
    (err: Error) => (error.textContent = refused = err.message),
  );
}

enabled.addEventListener('change', () => act(writeEnabled(enabled.checked)));
memory.addEventListener('change', () => act(writeSettings({ memoryBudgetMB: Number(memory.value) })));
onlyIdle.addEventListener('change', () => act(writeSettings({ onlyWhenIdle: onlyIdle.checked })));
onlyAc.addEventListener('change', () => act(writeSettings({ onlyOnAC: onlyAc.checked })));
$('options-link').addEventListener('click', (event) => {
  event.preventDefault();
  void chrome.runtime.openOptionsPage();
});

let ownPower: Awaited<ReturnType<typeof watchPower>> = 'unknown';
void watchPower((p) => (ownPower = p)).then((p) => (ownPower = p));

function stateLabel(s: ExtensionState): [string, string] {
  if (!s.enabled) return ['off', ''];
  if (s.waiting === 'idle') return ['waiting until idle', 'wait'];
  if (s.waiting === 'battery') return ['paused: on battery', 'wait'];
  const engine = s.engine;
  if (!engine || engine.state === 'connecting' || engine.state === 'off') return ['connecting', 'wait'];
  if (engine.state === 'failed') return ['failed', 'bad'];
  if (engine.assignments.some((a) => a.state === 'ready')) return ['serving', 'on'];
  if (engine.assignments.length > 0) return ['loading', 'wait'];
  return ['contributing', 'on'];
}

function render(s: ExtensionState): void {
  const [label, tone] = stateLabel(s);
  const badge = $('state');
  badge.textContent = label;
  badge.className = `badge ${tone}`;
  enabled.checked = s.enabled;
  if (document.activeElement !== memory) memory.value = String(s.settings.memoryBudgetMB);
  onlyIdle.checked = s.settings.onlyWhenIdle;
  onlyAc.checked = s.settings.onlyOnAC;
  $('power').textContent = `(${describePower(s.engine?.power ?? ownPower)})`;

  const body = $('assignments').querySelector('tbody')!;
  body.replaceChildren();
  const engine = s.engine;
  const assignments = s.enabled ? (engine?.assignments ?? []) : [];
  for (const a of assignments) {
    const progress = engine?.progress?.modelId === a.modelId && a.state === 'loading' ? ` ${Math.round((100 * engine.progress.bytesDone) / Math.max(1, engine.progress.bytesTotal))}%` : '';
    const layers = a.end - a.start === 1 ? String(a.start) : `${a.start}–${a.end - 1}`;
    const row = cells(document.createElement('tr'), [a.modelId, layers, `${a.state}${progress}`]);
    row.dataset.model = a.modelId;
    row.dataset.start = String(a.start);
    row.dataset.end = String(a.end);
    row.dataset.state = a.state;
    body.append(row);
  }
  $('assignments').hidden = assignments.length === 0;
  $('no-assignment').hidden = assignments.length > 0;
  $('tokens').textContent = String(engine?.tokensServed ?? 0);
  $('network').textContent = s.settings.network;
  $('signal').textContent = s.settings.signalUrl;
  $('peer').textContent = (s.enabled && engine?.peerId) || '–';
  error.textContent = refused || (s.enabled && engine?.error?.message) || '';
}

async function refresh(): Promise<void> {
  const ask: ControlMessage = { to: 'background', type: 'state' };
  const state = (await chrome.runtime.sendMessage(ask)) as ExtensionState;
  render(state);
}

void refresh().catch((err: Error) => (error.textContent = err.message));
setInterval(() => void refresh().catch(() => {}), 500);
