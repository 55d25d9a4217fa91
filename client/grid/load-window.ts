// A serving range's recent load over a rolling window, for its status reports: tokens per second,
// the share of the window a pass was running, and the median time of a decode pass and of a
// session's first pass. Fixed memory whatever the traffic: per-second slots for tokens and busy
// time, and the last few hundred pass times.
import { MAX_REPORTED_PASS_MS, MAX_REPORTED_TOKENS_PER_SECOND, type LoadReport } from '../../protocol/index.ts';

/** Three status reports' worth: long enough to smooth bursts, short enough to notice a stall. */
export const DEFAULT_LOAD_WINDOW_MS = 30_000;
const SLOT_MS = 1_000;
const MAX_SAMPLES = 512;

interface Sample {
  endedAt: number;
  ms: number;
  first: boolean;
}

/** One pass in flight: `end` it with the tokens it ran, or without when it failed. */
export interface Pass {
  end(tokens?: number, first?: boolean): void;
}

export class LoadWindow {
  private readonly slots: number;
  /** Per slot (ring): the absolute slot index it holds, busy ms and tokens in it. */
  private readonly slotIndex: Float64Array;
  private readonly busyMs: Float64Array;
  private readonly tokens: Float64Array;
  private readonly samples: Sample[] = [];
  private nextSample = 0;
  /** Passes in flight, and since when at least one was: busy time is their union, not their sum. */
  private running = 0;
  private busySince = 0;
  private readonly since: number;

  constructor(
    private readonly windowMs = DEFAULT_LOAD_WINDOW_MS,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.slots = Math.max(1, Math.ceil(windowMs / SLOT_MS));
    this.slotIndex = new Float64Array(this.slots).fill(-1);
    this.busyMs = new Float64Array(this.slots);
    this.tokens = new Float64Array(this.slots);
    this.since = now();
  }

  begin(): Pass {
    const startedAt = this.now();
    if (this.running++ === 0) this.busySince = startedAt;
    let ended = false;
    return {
      end: (tokens = 0, first = false) => {
        if (ended) return;
        ended = true;
        const at = this.now();
        if (tokens > 0) {
          this.cell(Math.floor(at / SLOT_MS), (i) => (this.tokens[i]! += tokens));
          this.sample({ endedAt: at, ms: at - startedAt, first });
        }
        if (--this.running === 0) this.addBusy(this.busySince, at);
      },
    };
  }

  /** The load over the window ending now, within the bounds the coordinator accepts. */
  report(): LoadReport {
    const now = this.now();
    const current = Math.floor(now / SLOT_MS);
    const oldest = current - this.slots + 1;
    const from = Math.max(this.since, oldest * SLOT_MS);
    const span = Math.max(1, now - from);
    let busy = this.running > 0 ? now - Math.max(this.busySince, from) : 0;
    let tokens = 0;
    for (let i = 0; i < this.slots; i++) {
      if (this.slotIndex[i]! < oldest) continue;
      busy += this.busyMs[i]!;
      tokens += this.tokens[i]!;
    }
    const recent = this.samples.filter((s) => s.endedAt >= now - this.windowMs);
    const decode = median(recent.filter((s) => !s.first).map((s) => s.ms));
    const first = median(recent.filter((s) => s.first).map((s) => s.ms));
    return {
      tokensPerSecond: round(Math.min(MAX_REPORTED_TOKENS_PER_SECOND, (tokens * 1000) / span)),
      utilisation: round(Math.min(1, busy / span)),
      ...(decode === undefined ? {} : { hopLatencyMs: round(Math.min(MAX_REPORTED_PASS_MS, decode)) }),
      ...(first === undefined ? {} : { firstTokenMs: round(Math.min(MAX_REPORTED_PASS_MS, first)) }),
    };
  }

  private sample(s: Sample): void {
    if (this.samples.length < MAX_SAMPLES) this.samples.push(s);
    else this.samples[this.nextSample] = s;
    this.nextSample = (this.nextSample + 1) % MAX_SAMPLES;
  }

  /** Spreads a busy interval over the slots it touches (only the window's last slots matter). */
  private addBusy(from: number, to: number): void {
    const start = Math.max(from, to - this.slots * SLOT_MS);
    for (let slot = Math.floor(start / SLOT_MS); slot * SLOT_MS < to; slot++) {
      const overlap = Math.min(to, (slot + 1) * SLOT_MS) - Math.max(start, slot * SLOT_MS);
      if (overlap > 0) this.cell(slot, (i) => (this.busyMs[i]! += overlap));
    }
  }

  /** The ring cell of an absolute slot, emptied first when it held an older one. */
  private cell(slot: number, add: (i: number) => void): void {
    const i = slot % this.slots;
    if (this.slotIndex[i] !== slot) {
      this.slotIndex[i] = slot;
      this.busyMs[i] = 0;
      this.tokens[i] = 0;
    }
    add(i);
  }
}

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  values.sort((a, b) => a - b);
  const mid = values.length >> 1;
  return values.length % 2 ? values[mid]! : (values[mid - 1]! + values[mid]!) / 2;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
