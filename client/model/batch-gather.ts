// When a continuous batcher runs its next batch, and how many items it takes. Items (one per
// session and step) gather while a pass runs; when none runs, a lone session's item starts a batch
// on the next task, so items whose messages have already arrived join it.
//
// Several sessions decoding at once along a pipeline of S stages (the hops of their route and the
// client) keep every stage busy only when they travel as several groups (micro-batches), so a batch
// takes at most max(MIN_MICRO_BATCH, ceil(active sessions / S)) items; the rest run in the next
// pass, right after. Within that size:
// - Groups drift (prompts are prefilled one after another), and batching alone never merges them.
//   The gather learns each session's period (the time between its last two arrivals) and holds a
//   batch for sessions due within about one pass: one that came while the pass ran would wait for
//   it anyway and then run alone. The batch starts as soon as they are here, or when time is up.
// - The items of one upstream batch arrive as a burst of messages, which a batch started on the
//   next task may cut in two: while others decode here, it starts once no item came for BURST_MS
//   (at most about one pass after the first).

/** Arrivals older than this are forgotten (the session ended or went quiet). */
const FORGET_MS = 30_000;
/** A gap this long ends a burst of arrivals. */
const BURST_MS = 2;
/**
 * Passes are not split below this many items: a pass reads all its weights whatever its size, so
 * small ones cost nearly as much as larger ones (CPU backend, a 10-layer SmolLM2-135M shard on an
 * AMD EPYC: 1 row 9.5 ms, 4 rows 18 ms, 8 rows 31 ms). With 8 sessions on 3 peer processes
 * sharing 2 cores, 2 groups of 4 gave more tokens/s than 4 groups of 2 or 1 group of 8.
 */
export const MIN_MICRO_BATCH = 4;

type Cancel = () => void;

/** fn after `ms`, or on the next task: setImmediate where there is one (no 1 ms floor), else setTimeout 0. */
function later(ms: number, fn: () => void): Cancel {
  const immediate = (globalThis as { setImmediate?: (fn: () => void) => unknown }).setImmediate;
  const clear = (globalThis as { clearImmediate?: (handle: unknown) => void }).clearImmediate;
  if (ms <= 0 && immediate && clear) {
    const handle = immediate(fn);
    return () => clear(handle);
  }
  const handle = setTimeout(fn, Math.max(0, ms));
  return () => clearTimeout(handle);
}

interface Arrival {
  at: number;
  /** Time since the one before (Infinity after the first). */
  period: number;
  /** Stages of the session's pipeline. */
  stages: number;
}

export class BatchGather {
  private readonly arrivals = new Map<string, Arrival>();
  /** Sessions the pending batch waits for. */
  private readonly expecting = new Set<string>();
  private cancel: Cancel | undefined;
  /** The latest time the pending batch may start. */
  private deadline = 0;
  /** Recent pass durations (moving average), ms; 0 before the first pass. */
  private passMs = 0;

  /** `run` starts a batch of whatever is waiting (at most `size()` items). */
  constructor(private readonly run: () => void) {}

  /**
   * An item of session `key` arrived (undefined: a caller without a session, never waited for);
   * `stages` is the depth of its pipeline (hops + client), 1 when unknown.
   */
  arrive(key: string | undefined, stages = 1): void {
    if (key === undefined) return;
    const now = performance.now();
    const last = this.arrivals.get(key);
    this.arrivals.set(key, { at: now, period: last ? now - last.at : Infinity, stages: Math.max(1, stages) });
  }

  /** How many items a batch takes: all of `waiting` for a lone pipeline, else one micro-batch. */
  size(waiting: number): number {
    const now = performance.now();
    let active = 0;
    let stages = 1;
    for (const a of this.arrivals.values()) {
      if (now - a.at > 2 * a.period) continue;
      active++;
      stages = Math.max(stages, a.stages);
    }
    return Math.max(MIN_MICRO_BATCH, Math.ceil(Math.max(active, waiting) / stages));
  }

  /**
   * An item was queued while no pass runs (or a pass ended with items waiting): starts the wait,
   * or moves it on. `waiting` names the sessions already queued.
   */
  queued(key: string | undefined, waiting: () => (string | undefined)[]): void {
    if (this.cancel === undefined) {
      this.schedule(waiting());
      return;
    }
    if (key !== undefined) this.expecting.delete(key);
    const queued = waiting();
    if (queued.length >= this.size(queued.length)) this.start(0); // a full batch is here
    else if (this.expecting.size === 0) this.start(Math.min(BURST_MS, this.deadline - performance.now())); // the burst goes on
  }

  /** A pass took `ms`. */
  passed(ms: number): void {
    this.passMs = this.passMs ? 0.7 * this.passMs + 0.3 * ms : ms;
  }

  /** Cancels a pending start; nothing more is scheduled until the next arrival. */
  close(): void {
    this.cancel?.();
    this.cancel = undefined;
    this.expecting.clear();
  }

  private schedule(waiting: (string | undefined)[]): void {
    this.expecting.clear();
    const now = performance.now();
    const limit = this.passMs;
    const queued = new Set(waiting);
    const room = this.size(waiting.length) - waiting.length;
    const due: [string, number][] = [];
    let others = false;
    for (const [key, a] of this.arrivals) {
      const quiet = now - a.at;
      if (quiet > FORGET_MS) {
        this.arrivals.delete(key);
        continue;
      }
      if (queued.has(key)) continue;
      if (quiet <= 2 * a.period) others = true; // decoding here lately
      const next = a.at + a.period - now;
      if (next <= limit && next >= -a.period / 2) due.push([key, next]);
    }
    due.sort((a, b) => a[1] - b[1]);
    for (const [key] of due.slice(0, Math.max(0, room))) this.expecting.add(key);
    this.deadline = now + limit;
    if (room <= 0) this.start(0);
    else this.start(this.expecting.size > 0 ? limit : others ? Math.min(BURST_MS, limit) : 0);
  }

  private start(wait: number): void {
    this.cancel?.();
    this.cancel = later(wait, () => {
      this.cancel = undefined;
      this.expecting.clear();
      this.run();
    });
  }
}
