// Continuous batching of the head for a client that runs many generations at once: logits calls
// waiting at the same time (each needs only the last row of its step) run as one pass [R, H], so
// the LM head, the largest matrix a client holds, is read once per batch instead of once per
// session. Calls that arrive while a batch runs form the next one; BatchGather decides when a batch
// starts and how many rows it takes (calls made through `session(key, stages)` let it wait for
// sessions due soon and keep micro-batches, as peers do for decode steps). Each row's logits are what
// Head.logits computes for it alone: bit for bit on the CPU, within rounding on WebGPU (whose
// linear sums in another order for several rows than for one). Used today by bench:grid's client,
// which drives eight sessions from one process; the SDK runs each generation's head on its own
// (on WebGPU a batched row may differ from a lone one in the last bits, and SDK replies must equal
// a lone generation's).
import { BatchGather } from './batch-gather.ts';
import { runBatch } from './batch-run.ts';
import type { HeadLike } from './generate.ts';
import type { Head } from './head.ts';

interface Waiting {
  key: string | undefined;
  row: Float32Array;
  resolve: (logits: Float32Array) => void;
  reject: (err: unknown) => void;
}

export interface HeadBatchStats {
  /** Passes run and rows they carried; rows / passes is the mean batch size. */
  passes: number;
  rows: number;
  largest: number;
}

export class HeadBatcher implements HeadLike {
  private waiting: Waiting[] = [];
  private running = false;
  private readonly gather = new BatchGather(() => void this.run());
  readonly stats: HeadBatchStats = { passes: 0, rows: 0, largest: 0 };

  constructor(readonly head: Head) {}

  embed(tokens: Uint32Array, positions: Uint32Array): Promise<Float32Array> {
    return this.head.embed(tokens, positions);
  }

  logits(hidden: Float32Array, tokens: number): Promise<Float32Array> {
    return this.logitsOf(undefined, hidden, tokens);
  }

  /**
   * This batcher as the head of one generation, so that batches learn when its rows come;
   * `stages` is the depth of its pipeline (the hops of its route and this client).
   */
  session(key: string, stages = 1): HeadLike {
    return {
      embed: (tokens, positions) => this.embed(tokens, positions),
      logits: (hidden, tokens) => this.logitsOf(key, hidden, tokens, stages),
    };
  }

  private logitsOf(key: string | undefined, hidden: Float32Array, tokens: number, stages = 1): Promise<Float32Array> {
    const H = this.head.config.hiddenSize;
    // Anything malformed goes to the head alone, which names the problem.
    if (!(hidden instanceof Float32Array) || !Number.isInteger(tokens) || tokens < 1 || hidden.length !== tokens * H) {
      return this.head.logits(hidden, tokens);
    }
    this.gather.arrive(key, stages);
    return new Promise((resolve, reject) => {
      this.waiting.push({ key, row: hidden.subarray((tokens - 1) * H), resolve, reject });
      if (!this.running) this.gather.queued(key, () => this.waiting.map((w) => w.key));
    });
  }

  private async run(): Promise<void> {
    if (this.running || this.waiting.length === 0) return;
    this.running = true;
    const batch = this.waiting.splice(0, this.gather.size(this.waiting.length));
    try {
      const ms = await runBatch<Waiting, Float32Array>(batch, (rows) => this.pass(rows), (w) => this.head.logits(w.row, 1), (rows) => this.count(rows));
      if (ms !== null) this.gather.passed(ms);
    } finally {
      this.running = false;
      if (this.waiting.length > 0) this.gather.queued(undefined, () => this.waiting.map((w) => w.key));
    }
  }

  /** Logits of each waiting row, from one pass over all of them. */
  private async pass(batch: readonly Waiting[]): Promise<Float32Array[]> {
    if (batch.length === 1) return [await this.head.logits(batch[0]!.row, 1)];
    const H = this.head.config.hiddenSize;
    const V = this.head.config.vocabSize;
    const rows = new Float32Array(batch.length * H);
    batch.forEach((w, i) => rows.set(w.row, i * H));
    const logits = await this.head.logits(rows, batch.length, { all: true });
    return batch.map((_, i) => logits.slice(i * V, (i + 1) * V));
  }

  private count(rows: number): void {
    this.stats.passes++;
    this.stats.rows += rows;
    this.stats.largest = Math.max(this.stats.largest, rows);
  }
}
