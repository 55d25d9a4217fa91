// The models as the gateway sees them. The network's list is asked of the server at most once per
// `listTtlMs` and shared by every request (each ask is a message on the one signaling connection,
// which the server rate-limits). Each model requests use is tracked: when its spec changes on the
// network, or it goes unused for `idleMs`, or more than `maxModels` are kept, the grid lets go of
// its cached client (tokenizer, head, routes) once the requests running on it have ended, so the
// next request opens it afresh from the current spec.
import { AigridError, type ModelSpec } from '../../protocol/index.ts';
import type { ModelInfo, ModelList } from '../sdk/types.ts';

/** What the directory uses of a Grid. */
export interface ModelSource {
  models: { list(): Promise<ModelList> };
  /** Lets go of a model's cached client once `drained` settles (Grid.releaseModel); absent: nothing is cached. */
  releaseModel?(modelId: string, drained?: Promise<unknown>): void;
}

export interface ModelDirectoryOptions {
  /** How long one answer of the server serves every request (default 1.5 s). */
  listTtlMs?: number;
  /** A model's client is let go after this long without requests (default 10 min). */
  idleMs?: number;
  /** Most models whose clients are kept; the least recently used idle ones go first (default 8). */
  maxModels?: number;
}

/** An unknown model is asked about again only when the list is at least this old (a flood of bad ids asks nothing). */
const MISS_REFRESH_MS = 250;

interface Entry {
  /** The spec the grid's cached client was opened for (as JSON, to compare). */
  spec: string;
  running: number;
  lastUsed: number;
  /** Called when `running` drops to 0. */
  onIdle: (() => void)[];
}

export class ModelDirectory {
  private readonly listTtlMs: number;
  private readonly idleMs: number;
  private readonly maxModels: number;
  private cached: { list: ModelList; at: number } | null = null;
  private asking: Promise<ModelList> | null = null;
  /** Bounded: maxModels idle entries at most, plus those with requests running (bounded by the admission). */
  private readonly entries = new Map<string, Entry>();
  private readonly sweeper: ReturnType<typeof setInterval>;

  constructor(
    private readonly source: ModelSource,
    options: ModelDirectoryOptions = {},
  ) {
    this.listTtlMs = options.listTtlMs ?? 1_500;
    this.idleMs = options.idleMs ?? 10 * 60_000;
    this.maxModels = options.maxModels ?? 8;
    this.sweeper = setInterval(() => this.sweep(), Math.min(this.idleMs / 2, 60_000));
    this.sweeper.unref?.();
  }

  /** The network's models, at most `listTtlMs` old. */
  list(): Promise<ModelList> {
    if (this.cached && performance.now() - this.cached.at < this.listTtlMs) return Promise.resolve(this.cached.list);
    return this.refresh();
  }

  async retrieve(modelId: string): Promise<ModelInfo> {
    let list = await this.list();
    let found = list.data.find((m) => m.id === modelId);
    // A model served a moment ago may be missing from a list asked just before.
    if (!found && this.cached && performance.now() - this.cached.at >= MISS_REFRESH_MS) {
      list = await this.refresh();
      found = list.data.find((m) => m.id === modelId);
    }
    if (!found) {
      const served = list.data.map((m) => m.id).join(', ') || 'none';
      throw new AigridError('ERR_UNKNOWN_MODEL', `this network serves no model ${JSON.stringify(modelId.slice(0, 200))} (served: ${served.slice(0, 500)})`);
    }
    return found;
  }

  /**
   * Takes a served model for one request; resolves with the function that ends the use. A spec
   * that differs from the one the grid's client was opened for retires that client (once its
   * requests end) before this request opens a new one.
   */
  async use(modelId: string): Promise<() => void> {
    let info: ModelInfo;
    try {
      info = await this.retrieve(modelId);
    } catch (err) {
      // Without a list (the server did not answer in time) the grid's own call finds the model or
      // fails with the reason; only an unknown id is answered here.
      if ((err as AigridError).code === 'ERR_UNKNOWN_MODEL') throw err;
      return () => {};
    }
    const spec = specKey(info.spec);
    let entry = this.entries.get(modelId);
    if (entry && entry.spec !== spec) {
      this.retire(modelId, entry);
      entry = undefined;
    }
    if (!entry) {
      entry = { spec, running: 0, lastUsed: performance.now(), onIdle: [] };
      this.entries.set(modelId, entry);
      this.trim();
    }
    const used = entry;
    used.running++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      used.running--;
      used.lastUsed = performance.now();
      if (used.running === 0) for (const idle of used.onIdle.splice(0)) idle();
    };
  }

  /** Models whose clients are kept now (for tests and status). */
  get kept(): string[] {
    return [...this.entries.keys()];
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private refresh(): Promise<ModelList> {
    if (this.asking) return this.asking;
    const asking = this.source.models.list().then((list) => {
      this.cached = { list, at: performance.now() };
      return list;
    });
    this.asking = asking;
    const clear = () => {
      if (this.asking === asking) this.asking = null;
    };
    asking.then(clear, clear);
    return asking;
  }

  /** Forgets the entry now and lets the grid close its client once its running requests end. */
  private retire(modelId: string, entry: Entry): void {
    if (this.entries.get(modelId) === entry) this.entries.delete(modelId);
    const drained = entry.running === 0 ? Promise.resolve() : new Promise<void>((resolve) => entry.onIdle.push(resolve));
    this.source.releaseModel?.(modelId, drained);
  }

  /** Past maxModels, the least recently used idle models go. */
  private trim(): void {
    if (this.entries.size <= this.maxModels) return;
    const idle = [...this.entries].filter(([, e]) => e.running === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [id, entry] of idle.slice(0, this.entries.size - this.maxModels)) this.retire(id, entry);
  }

  private sweep(): void {
    const now = performance.now();
    for (const [id, entry] of [...this.entries]) {
      if (entry.running === 0 && now - entry.lastUsed >= this.idleMs) this.retire(id, entry);
    }
  }
}

/** Key order is the schema's, so one spec always serializes the same. */
function specKey(spec: ModelSpec): string {
  return JSON.stringify(spec);
}
