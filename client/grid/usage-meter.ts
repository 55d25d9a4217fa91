// A client's side of credits: the tokens it received through each peer of a model's routes,
// reported to the server in `usage` messages (every USAGE_REPORT_MS while busy, and soon after each
// session ends). The server pays a peer only what both it and the client report, so a client
// counts only results it accepted. While a spot-check runs, reports wait for it (up to
// MAX_HOLD_MS), and a peer the check finds wrong has what was counted for it dropped and is not
// counted for a while: its results were not accepted. Work reported before a check ended (a
// session longer than the report interval) stays paid; its conviction goes to reputation.
import { MAX_USAGE_ENTRIES, type ClientMessage, type Hop } from '../../protocol/index.ts';
import { UsageCounts } from './usage-counts.ts';

/** How often a busy client reports, like a serving peer's status. */
export const USAGE_REPORT_MS = 10_000;
/** Reports of one model are at least this far apart (the server takes a few per second). */
const MIN_GAP_MS = 1_000;
/** Longest wait for running spot-checks before counts are reported anyway. */
const MAX_HOLD_MS = 60_000;
/** How long a peer found wrong is not counted. */
const WRONG_MS = 60 * 60_000;
const MAX_WRONG = 256;

export class UsageMeter {
  private readonly counts = new UsageCounts();
  private readonly wrongUntil = new Map<string, number>();
  private checks = 0;
  private heldSince: number | undefined;
  private lastSent = -Infinity;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = Infinity;
  private closed = false;

  constructor(
    private readonly modelId: string,
    private readonly send: (message: ClientMessage) => boolean,
    private readonly everyMs = USAGE_REPORT_MS,
  ) {}

  /** The route's hops returned results for `tokens` tokens, and the client took them. */
  ran(hops: readonly Pick<Hop, 'peerId' | 'start' | 'end'>[], tokens: number): void {
    if (this.closed || tokens <= 0) return;
    const now = Date.now();
    for (const { peerId, start, end } of hops) {
      const until = this.wrongUntil.get(peerId);
      if (until !== undefined && until > now) continue;
      this.counts.add(peerId, start, end, tokens);
    }
    this.schedule(this.everyMs);
  }

  /** A whole-model call answered by `peerId` (a pipeline block's one layer) was taken. */
  called(peerId: string, start: number, end: number): void {
    if (this.closed) return;
    this.counts.add(peerId, start, end, 0, 1);
    this.flush(); // a call is a whole session: reported soon, as a session's end is
  }

  /** A spot-check found the peer wrong: nothing counted for it is reported. */
  wrong(peerId: string): void {
    this.counts.drop(peerId);
    this.wrongUntil.delete(peerId);
    this.wrongUntil.set(peerId, Date.now() + WRONG_MS);
    if (this.wrongUntil.size > MAX_WRONG) this.wrongUntil.delete(this.wrongUntil.keys().next().value!);
  }

  /** A spot-check started (+1) or ended (-1). */
  checking(delta: 1 | -1): void {
    this.checks = Math.max(0, this.checks + delta);
  }

  /** A session ended: its counts go out soon. */
  flush(): void {
    if (this.counts.size) this.schedule(Math.max(0, this.lastSent + MIN_GAP_MS - Date.now()));
  }

  /** Reports what is counted now and stops. */
  close(): void {
    if (this.closed) return;
    this.checks = 0;
    this.report();
    this.closed = true;
    clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    const at = Date.now() + ms;
    if (this.closed || (this.timer && this.timerAt <= at)) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.report();
    }, ms);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private report(): void {
    const now = Date.now();
    if (this.checks > 0 && now - (this.heldSince ??= now) < MAX_HOLD_MS) return this.schedule(MIN_GAP_MS);
    this.heldSince = undefined;
    const taken = this.counts.take(MAX_USAGE_ENTRIES);
    if (taken.length === 0) return;
    const peers = taken.map(({ party, start, end, tokens, calls }) => ({ peerId: party, start, end, tokens, ...(calls ? { calls } : {}) }));
    this.send({ type: 'usage', modelId: this.modelId, peers });
    this.lastSent = now;
    if (this.counts.size) this.schedule(MIN_GAP_MS);
  }
}
