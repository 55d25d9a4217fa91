// The permission prompt for one origin (permission.html?origin=...): the person's decision is
// stored, which the waiting service worker sees, and the window closes. Allow is enabled only
// after the prompt has been in view for a moment, so a click aimed at the page that opened it
// cannot land on Allow.
import { decide } from '../settings.ts';
import { $ } from './dom.ts';

/** How long the prompt must be visible before Allow can be pressed. */
const ALLOW_DELAY_MS = 1000;

const origin = new URLSearchParams(location.search).get('origin') ?? '';
$('origin').textContent = origin;
const allow = $('allow') as HTMLButtonElement;

function answer(decision: 'allow' | 'deny'): void {
  if (!/^https?:\/\//.test(origin)) return window.close();
  if (decision === 'allow' && allow.disabled) return;
  void decide(origin, decision).then(() => window.close());
}

let timer: ReturnType<typeof setTimeout> | undefined;
/** Disables Allow and enables it once the prompt has been visible for ALLOW_DELAY_MS. */
function arm(): void {
  allow.disabled = true;
  clearTimeout(timer);
  if (document.visibilityState === 'visible') timer = setTimeout(() => (allow.disabled = false), ALLOW_DELAY_MS);
}
document.addEventListener('visibilitychange', arm);
arm();

allow.addEventListener('click', () => answer('allow'));
$('deny').addEventListener('click', () => answer('deny'));
