// The options page: the signaling server and network this browser belongs to, and the sites that
// asked to use window.aigrid, each with its decision and a button to revoke it.
import { readOrigins, readSettings, revoke, writeSettings } from '../settings.ts';
import { STORAGE } from '../protocol.ts';
import { $, cells } from './dom.ts';

const signalUrl = $<HTMLInputElement>('signal-url');
const network = $<HTMLInputElement>('network');
const saved = $('saved');

async function loadSettings(): Promise<void> {
  const s = await readSettings();
  signalUrl.value = s.signalUrl;
  network.value = s.network;
}

$('network-form').addEventListener('submit', (event) => {
  event.preventDefault();
  writeSettings({ signalUrl: signalUrl.value.trim(), network: network.value.trim() }).then(
    () => (saved.textContent = 'Saved.'),
    (err: Error) => (saved.textContent = err.message),
  );
});

async function renderOrigins(): Promise<void> {
  const origins = [...(await readOrigins())].sort(([a], [b]) => a.localeCompare(b));
  const body = $('origins').querySelector('tbody')!;
  body.replaceChildren();
  for (const [origin, record] of origins) {
    const row = cells(document.createElement('tr'), [origin, record.decision === 'allow' ? 'allowed' : 'denied', new Date(record.at).toLocaleString()]);
    row.dataset.origin = origin;
    const button = document.createElement('button');
    button.textContent = 'Revoke';
    button.className = 'revoke';
    button.addEventListener('click', () => void revoke(origin));
    const td = document.createElement('td');
    td.append(button);
    row.append(td);
    body.append(row);
  }
  $('origins').hidden = origins.length === 0;
  $('no-origins').hidden = origins.length > 0;
}

chrome.storage.onChanged.addListener((changes, area) => {
  if (area !== 'local') return;
  if (Object.keys(changes).some((k) => k.startsWith(STORAGE.originPrefix))) void renderOrigins();
});

void loadSettings();
void renderOrigins();
