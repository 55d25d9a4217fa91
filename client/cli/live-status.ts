// What `aigrid serve` and `aigrid start` show while serving: a progress bar while weights load,
// then one live line of tokens/s, sessions and tokens served. On a terminal the line redraws in
// place; otherwise (logs, pipes) a plain line is printed every few seconds when something changed.
import type { Contribution } from '../sdk/node.ts';

const BAR_WIDTH = 24;
const MB = 1024 * 1024;

export function progressBar(done: number, total: number): string {
  const share = total > 0 ? Math.min(1, done / total) : 0;
  const filled = Math.round(share * BAR_WIDTH);
  return `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${(share * 100).toFixed(0).padStart(3)}% ${(done / MB).toFixed(1)}/${(total / MB).toFixed(1)} MB`;
}

export interface LiveStatusOptions {
  out?: NodeJS.WriteStream;
  /** How often the tokens/s line is refreshed (default 1 s). */
  intervalMs?: number;
}

/** Shows a contribution's loading and serving; returns a function that stops the display. */
export function showLiveStatus(contribution: Contribution, options: LiveStatusOptions = {}): () => void {
  const out = options.out ?? process.stdout;
  const tty = Boolean(out.isTTY);
  let lastLine = '';
  let lastPrintAt = 0;
  let lastNews = '';
  /** `news` is what must change for a log line to be worth printing (a terminal redraws anyway). */
  const draw = (line: string, force = false, news = line) => {
    if (line === lastLine && !force) return;
    if (tty) {
      out.write(`\r${line.padEnd(lastLine.length)}`);
    } else {
      const now = Date.now();
      if (!force && (news === lastNews || now - lastPrintAt < 5000)) return;
      lastPrintAt = now;
      lastNews = news;
      out.write(`${line}\n`);
    }
    lastLine = line;
  };
  const newline = () => {
    if (tty && lastLine) out.write('\n');
    lastLine = '';
  };
  contribution.on('progress', (p) => draw(`loading ${p.modelId} [${p.start}, ${p.end}) ${progressBar(p.bytesDone, p.bytesTotal)}`, p.bytesDone === p.bytesTotal));
  // A peer repeats its status every few seconds; only changes are shown.
  const states = new Map<string, string>();
  contribution.on('status', (s) => {
    const key = `${s.modelId} [${s.start}, ${s.end})`;
    const state = `${s.state} ${s.detail ?? ''}`;
    if (states.get(key) === state) return;
    states.set(key, state);
    newline();
    out.write(`serving ${s.modelId} layers [${s.start}, ${s.end}): ${s.state}${s.detail ? ` (${s.detail})` : ''}\n`);
  });
  contribution.on('warning', (err) => {
    newline();
    out.write(`warning ${err.code}: ${err.message}\n`);
  });
  let served = contribution.tokensServed;
  let at = performance.now();
  const timer = setInterval(() => {
    const status = contribution.status();
    if (!status.some((s) => s.state === 'ready')) return;
    const now = performance.now();
    const total = contribution.tokensServed;
    const rate = ((total - served) * 1000) / (now - at);
    served = total;
    at = now;
    const sessions = status.reduce((n, s) => n + s.sessions, 0);
    draw(`${rate.toFixed(1)} tok/s · ${sessions} sessions · ${total} tokens served · up ${contribution.uptimeS} s`, false, `${sessions} ${total}`);
  }, options.intervalMs ?? 1000);
  timer.unref?.();
  return () => {
    clearInterval(timer);
    newline();
  };
}
