// The permission prompt for one origin (permission.html?origin=...): the person's decision is
// stored, which the waiting service worker sees, and the window closes.
import { decide } from '../settings.ts';
import { $ } from './dom.ts';

const origin = new URLSearchParams(location.search).get('origin') ?? '';
$('origin').textContent = origin;

function answer(decision: 'allow' | 'deny'): void {
  if (!/^https?:\/\//.test(origin)) return window.close();
  void decide(origin, decision).then(() => window.close());
}

$('allow').addEventListener('click', () => answer('allow'));
$('deny').addEventListener('click', () => answer('deny'));
