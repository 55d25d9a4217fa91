// Continuous batching on a serving peer: decode steps (one token each) of different sessions that
// wait for the same shard (one model's loaded layers) and layer range run as one Shard.forwardBatch pass, so the weights are
// read once per batch. While a batch runs, newly arrived steps gather for the next one; BatchGather
// decides when the next batch starts and how many steps it takes (one micro-batch per pipeline
// stage when many sessions decode, so that the stages of their routes work at once).
// On WebGPU a lane keeps two passes in flight: the next batch is recorded and submitted while the
// previous one's result is read back, so the device does not idle through the read-back. A pass
// is recorded before its first await, so the queue runs passes (and KV appends) in call order; a
// session waits out its own pass in flight before its next step joins one.
import { BatchGather } from '../model/batch-gather.ts';
import { runBatch } from '../model/batch-run.ts';
import type { Head } from '../model/head.ts';
import type { PassEnds, Shard } from '../model/shard.ts';
import { AigridError } from '../../protocol/index.ts';

/**
 * The parts of a peer's stage that run in the layers' pass (the head shares the shard's backend):
 * the embedding of the steps' token ids, and the head's logits of their outputs.
 */
export interface StepEnds {
  head: Head;
  embed: boolean;
  logits: boolean;
}

/**
 * The PassEnds of a pass over `tokens` rows with a stage's ends (`ids`: the rows' token ids when
 * it embeds), and `finish`, which completes what the pass returns (the head's logits of every row
 * with `all`, else of the last).
 */
export function passEnds(ends: StepEnds, ids: Uint32Array | null, positions: Uint32Array, tokens: number, all: boolean): { parts: PassEnds; finish: (out: Float32Array) => Float32Array } {
  const parts: PassEnds = {};
  if (ids) {
    parts.input = ends.head.embedOps(ids, positions) ?? undefined;
    if (!parts.input) throw new AigridError('ERR_INVALID_ARGUMENT', 'stage ends: this head embeds on the CPU');
  }
  const output = ends.logits ? ends.head.logitsOps(tokens, { all }) : undefined;
  parts.output = output;
  return { parts, finish: (out) => (output ? output.finish(out) : out) };
}

/** A step's input: hidden states [1, H], or a token id its lane embeds. */
export type StepInput = { hidden: Float32Array } | { ids: Uint32Array };

interface Step {
  hidden?: Float32Array;
  ids?: Uint32Array;
  position: number;
  sessionId: string;
  resolve: (out: Float32Array) => void;
  reject: (err: unknown) => void;
}

interface Lane {
  shard: Shard;
  layers: { start: number; end: number };
  ends: StepEnds | undefined;
  waiting: Step[];
  /** Passes recorded and not yet answered, and the sessions they carry. */
  inFlight: number;
  busy: Set<string>;
  /** Passes allowed in flight at once: 2 where the device works apart from JS (WebGPU), else 1. */
  depth: number;
  gather: BatchGather;
}

export interface BatchStats {
  /** Passes run and steps they carried; steps / passes is the mean batch size. */
  passes: number;
  steps: number;
  largest: number;
  /** Passes that started while another pass of their lane was in flight. */
  overlapped: number;
}

export class DecodeBatcher {
  /** Per shard, its lanes by layer range: two models with the same cut never share a lane. */
  private readonly lanes = new Map<Shard, Map<string, Lane>>();
  readonly stats: BatchStats = { passes: 0, steps: 0, largest: 0, overlapped: 0 };

  /**
   * Queues one decode step; resolves with its output row [1, H] (with ends.logits, its logits [V]).
   * `stages` is the depth of the session's pipeline (its route's hops and the client).
   */
  step(shard: Shard, layers: { start: number; end: number }, input: StepInput, position: number, sessionId: string, stages = 1, ends?: StepEnds): Promise<Float32Array> {
    if ('ids' in input ? input.ids.length !== 1 || !ends?.embed : ends?.embed) {
      return Promise.reject(new AigridError('ERR_INVALID_ARGUMENT', 'decode batcher: a step gives one token id exactly when its lane embeds'));
    }
    // Steps share a pass only when the same parts run around the same layers.
    const key = `${layers.start}-${layers.end}${ends?.embed ? '+embed' : ''}${ends?.logits ? '+head' : ''}`;
    let lanes = this.lanes.get(shard);
    if (!lanes) this.lanes.set(shard, (lanes = new Map()));
    let lane = lanes.get(key);
    if (!lane) {
      const fresh: Lane = {
        shard, layers, ends: ends?.embed || ends?.logits ? ends : undefined, waiting: [], inFlight: 0, busy: new Set(),
        depth: shard.backend.kind === 'webgpu' ? 2 : 1, gather: new BatchGather(() => void this.run(fresh)),
      };
      lane = fresh;
      lanes.set(key, lane);
    }
    const target = lane;
    target.gather.arrive(sessionId, stages);
    return new Promise((resolve, reject) => {
      target.waiting.push({ ...input, position, sessionId, resolve, reject });
      // While the lane's passes in flight are as many as it allows, the steps gathered meanwhile wait for one to end.
      if (target.inFlight < target.depth) target.gather.queued(sessionId, () => this.ready(target).map((s) => s.sessionId));
    });
  }

  /** Forgets a shard that is no longer served; steps still waiting for it fail. */
  forget(shard: Shard): void {
    const lanes = this.lanes.get(shard);
    this.lanes.delete(shard);
    for (const lane of lanes?.values() ?? []) {
      lane.gather.close();
      for (const s of lane.waiting.splice(0)) s.reject(new AigridError('ERR_NO_ROUTE', 'the layers this step waited for are no longer served here'));
    }
  }

  private async run(lane: Lane): Promise<void> {
    if (lane.inFlight >= lane.depth) return;
    const batch = this.take(lane, lane.gather.size(lane.waiting.length));
    if (batch.length === 0) return;
    if (lane.inFlight++ > 0) this.stats.overlapped++;
    for (const s of batch) lane.busy.add(s.sessionId);
    try {
      const ms = await runBatch<Step, Float32Array>(
        batch,
        (steps) => this.pass(lane, steps),
        async (s) => (await this.pass(lane, [s]))[0]!,
        (steps) => this.count(steps),
      );
      if (ms !== null) lane.gather.passed(ms);
    } finally {
      lane.inFlight--;
      for (const s of batch) lane.busy.delete(s.sessionId);
      if (this.ready(lane).length > 0) lane.gather.queued(undefined, () => this.ready(lane).map((s) => s.sessionId));
    }
  }

  /** The waiting steps a pass may take now: not of a session whose step is in flight. */
  private ready(lane: Lane): Step[] {
    return lane.busy.size === 0 ? lane.waiting : lane.waiting.filter((s) => !lane.busy.has(s.sessionId));
  }

  /** One pass of the lane's layers over the steps, with the ends it runs (recorded before the first await). */
  private async pass(lane: Lane, steps: readonly Step[]): Promise<Float32Array[]> {
    const { shard, layers, ends } = lane;
    if (!ends) return shard.forwardBatch(steps, layers);
    const ids = ends.embed ? Uint32Array.from(steps, (s) => s.ids![0]!) : null;
    const { parts, finish } = passEnds(ends, ids, Uint32Array.from(steps, (s) => s.position), steps.length, true);
    return (await shard.forwardBatch(steps, layers, parts)).map(finish);
  }

  /**
   * Up to `size` waiting steps, in arrival order, at most one per session (a second waits for the
   * next batch) and none of a session in flight.
   */
  private take(lane: Lane, size: number): Step[] {
    const seen = new Set<string>(lane.busy);
    const batch: Step[] = [];
    const rest: Step[] = [];
    for (const s of lane.waiting) {
      if (seen.has(s.sessionId) || batch.length >= size) rest.push(s);
      else batch.push(s);
      seen.add(s.sessionId);
    }
    lane.waiting = rest;
    return batch;
  }

  private count(steps: number): void {
    this.stats.passes++;
    this.stats.steps += steps;
    this.stats.largest = Math.max(this.stats.largest, steps);
  }
}
