// A shard: layers [start, end) of a model on one backend, with a KV cache per session. It is what a
// serving peer holds; hidden states [T, H] come in, [T, H] go out.
import { AigridError } from '../../protocol/index.ts';
import { WEIGHT_DTYPES } from '../../kernels/weights.ts';
import { resolveBackend, type BackendChoice } from './backend/select.ts';
import type { Backend, KvStore, KvStoreOptions, Ops, Tensor, WeightDtype } from './backend/types.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { parseConfig, type ModelConfig } from './config.ts';
import { KvSessions, type KvSession, type KvUsage } from './kv-sessions.ts';
import { checkRuntimeSupport, layerArch, type Layer } from './layers/index.ts';
import { checkTensors, ProgressTotal, readValues, type LoadProgress, type TensorSource } from './load-weights.ts';

export const DEFAULT_KV_BUDGET_BYTES = 1024 * 1024 * 1024;
export const DEFAULT_MAX_SESSION_TOKENS = 2048;

export interface ShardLoadOptions {
  start: number;
  end: number;
  /** A backend to share (e.g. with the head), or which kind to make (default 'auto'). */
  backend?: Backend | BackendChoice;
  /** The GPU for a backend made here: navigator.gpu in pages, nodeGpu() in Node, or a context. */
  gpu?: GPU | GpuContext;
  /** How linear weights are stored (default f32). */
  weightDtype?: WeightDtype;
  /** KV memory of all sessions together (default 1 GiB). */
  kvBudgetBytes?: number;
  /** How sessions' keys and values are kept (default f32); f16 fits twice the tokens in the budget. */
  kvDtype?: KvDtype;
  /** Tokens one session may hold (default min(max_position_embeddings, 2048)). */
  maxSessionTokens?: number;
  /** Who a session belongs to, so KV eviction is fair among clients (kv-sessions.ts). */
  kvOwnerOf?: (sessionId: string) => string | undefined;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
}

/** The model's config, with the fields the runtime cannot honour refused by name. */
export function readConfig(source: TensorSource): ModelConfig {
  const config = parseConfig(source.config, source.generationConfig ?? {});
  checkRuntimeSupport(source.config, config);
  return config;
}

export type KvDtype = NonNullable<KvStoreOptions['dtype']>;

export function checkKvDtype(dtype: KvDtype): void {
  if (dtype !== 'f32' && dtype !== 'f16') {
    throw new AigridError('ERR_INVALID_ARGUMENT', `kvDtype must be f32 or f16, got ${JSON.stringify(dtype)}`);
  }
}

export function checkWeightDtype(dtype: WeightDtype): void {
  if (!WEIGHT_DTYPES.includes(dtype)) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `weightDtype must be one of ${WEIGHT_DTYPES.join(', ')}, got ${JSON.stringify(dtype)}`);
  }
}

/** ERR_SHAPE_MISMATCH unless `data` holds `tokens` rows of `width`; ERR_INVALID_ARGUMENT on NaN or infinity. */
export function checkRows(what: string, data: Float32Array, tokens: number, width: number): void {
  if (!(data instanceof Float32Array)) throw new AigridError('ERR_INVALID_ARGUMENT', `${what} must be a Float32Array`);
  if (data.length !== tokens * width) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `${what} has ${data.length} values, expected [${tokens}, ${width}] = ${tokens * width}`);
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `${what} holds a non-finite value (${data[i]}) at row ${Math.floor(i / width)}, column ${i % width}`);
    }
  }
}

/**
 * What a pass runs besides its layers, on the same backend, so hidden states stay on the device:
 * the embedding that makes its input, the head that takes its output (Head.embedOps, logitsOps).
 */
export interface PassEnds {
  /** Records the input rows [rows, H] instead of uploading hidden. */
  input?: (ops: Ops) => Tensor;
  output?: PassOutput;
}

/** What a pass returns, recorded from the last layer's output: `rows` rows of `width`. */
export interface PassOutput {
  rows: number;
  width: number;
  record(ops: Ops, x: Tensor): Tensor;
}

/** A session's part of a pass, as admitted before it runs. */
interface PassEntry {
  id: string;
  /** Its live session, or undefined when the pass starts one. */
  found: KvSession | undefined;
  /** Tokens it had cached before the pass. */
  cached: number;
  tokens: number;
}

export class Shard {
  private readonly sessions: KvSessions;
  private destroyed = false;

  private constructor(
    readonly config: ModelConfig,
    readonly start: number,
    readonly end: number,
    readonly backend: Backend,
    private readonly ownsBackend: boolean,
    readonly weightDtype: WeightDtype,
    readonly maxSessionTokens: number,
    readonly kvDtype: KvDtype,
    private readonly layers: Layer[],
    kvBudgetBytes: number,
    kvOwnerOf?: (sessionId: string) => string | undefined,
  ) {
    const kvOptions = { kvHeads: config.numKvHeads, headDim: config.headDim, maxSeq: maxSessionTokens, dtype: kvDtype };
    this.sessions = new KvSessions({
      ownerOf: kvOwnerOf,
      budgetBytes: kvBudgetBytes,
      sessionBytes: (end - start) * backend.kvBytes(kvOptions),
      create: (id) => {
        const stores: KvStore[] = [];
        try {
          for (let layer = start; layer < end; layer++) stores.push(backend.kvStore({ ...kvOptions, label: `kv/${id}/${layer}` }));
        } catch (err) {
          stores.forEach((s) => s.destroy());
          throw err;
        }
        return stores;
      },
    });
  }

  /** Reads exactly the tensors of layers [start, end), checks them against the config and uploads them. */
  static async load(source: TensorSource, options: ShardLoadOptions): Promise<Shard> {
    const config = readConfig(source);
    const { start, end } = options;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end <= start || end > config.numLayers) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `layers [${start}, ${end}) are not a non-empty range within the model's ${config.numLayers}`);
    }
    const dtype = options.weightDtype ?? 'f32';
    checkWeightDtype(dtype);
    const kvDtype = options.kvDtype ?? 'f32';
    checkKvDtype(kvDtype);
    const maxSessionTokens = options.maxSessionTokens ?? Math.min(config.maxPositions, DEFAULT_MAX_SESSION_TOKENS);
    if (!Number.isInteger(maxSessionTokens) || maxSessionTokens < 1 || maxSessionTokens > config.maxPositions) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `maxSessionTokens must be an integer in [1, ${config.maxPositions}], got ${maxSessionTokens}`);
    }
    const arch = layerArch(config);
    const shapes = Array.from({ length: end - start }, (_, i) => arch.shapes(config, start + i));
    // Headers only: a wrong or incomplete checkpoint fails before its weights download.
    const sizes = await checkTensors(source, new Map(shapes.flatMap((m) => [...m])), options.signal);
    const progress = new ProgressTotal([...sizes.values()].reduce((a, b) => a + b, 0), options.onProgress);

    const { backend, owned } = await resolveBackend(options.backend, { gpu: options.gpu });
    const layers: Layer[] = [];
    try {
      const kvBudgetBytes = options.kvBudgetBytes ?? DEFAULT_KV_BUDGET_BYTES;
      // Refuses a budget below one session before anything is uploaded.
      const shard = new Shard(config, start, end, backend, owned, dtype, maxSessionTokens, kvDtype, layers, kvBudgetBytes, options.kvOwnerOf);
      for (const [i, layerShapes] of shapes.entries()) {
        options.signal?.throwIfAborted();
        const tensors = await readValues(source, layerShapes.keys(), { signal: options.signal, onProgress: progress.forRead() });
        layers.push(arch.create(backend, config, start + i, tensors, dtype));
        await backend.settle();
      }
      return shard;
    } catch (err) {
      for (const layer of layers) layer.dispose(backend);
      if (owned) backend.destroy();
      throw err;
    }
  }

  /** KV memory in use and allowed. */
  get kv(): KvUsage {
    return this.sessions.usage;
  }

  /** Sessions with a cache here, least recently used first. */
  sessionIds(): string[] {
    return this.sessions.ids();
  }

  /** Tokens cached for a session (0 when it has no cache). */
  sessionLength(sessionId: string): number {
    return this.sessions.peek(sessionId)?.stores[0]!.length ?? 0;
  }

  /** Frees a session's caches; true if it had any. */
  release(sessionId: string): boolean {
    return this.sessions.release(sessionId);
  }

  /**
   * Runs hidden [T, H] through the layers at positions [T] (consecutive from the session's cached
   * length; 0 starts a session) and returns [T, H]. Prefill passes many tokens, decode one.
   * `layers` picks a sub-range of this shard's layers (a route may enter a peer mid-range); a
   * session keeps to one sub-range, whose layers alone hold its cache. With `ends`, an embedding
   * makes the input (hidden is then null) and a head's output is returned, in the same pass.
   */
  async forward(
    hidden: Float32Array | null,
    positions: Uint32Array,
    sessionId: string,
    layers: { start: number; end: number } = { start: this.start, end: this.end },
    ends: PassEnds = {},
  ): Promise<Float32Array> {
    // Everything up to the first await runs at once, so passes are recorded in call order.
    if (this.destroyed) throw new AigridError('ERR_INVALID_ARGUMENT', 'shard: used after destroy()');
    const entry = this.admit(hidden, positions, sessionId, layers, ends);
    return this.pass([entry], hidden, positions, layers, ends);
  }

  /**
   * One decode step of several sessions (one token each, distinct ids) as one pass: their rows are
   * stacked into [B, H], so every linear layer reads its weights once for the whole batch; only the
   * KV append and attention run per session. Each item is checked as forward() checks it, all
   * before anything runs; a failed pass rolls back (or evicts) every session of the batch.
   * Returns each item's [1, H] output (with ends.output, its share of that output), in order.
   */
  async forwardBatch(
    items: readonly { hidden?: Float32Array; position: number; sessionId: string }[],
    layers: { start: number; end: number } = { start: this.start, end: this.end },
    ends: PassEnds = {},
  ): Promise<Float32Array[]> {
    if (this.destroyed) throw new AigridError('ERR_INVALID_ARGUMENT', 'shard: used after destroy()');
    if (!Array.isArray(items) || items.length === 0) throw new AigridError('ERR_INVALID_ARGUMENT', 'shard: a batch needs at least one item');
    const H = this.config.hiddenSize;
    const seen = new Set<string>();
    const entries = items.map(({ hidden, position, sessionId }, b) => {
      if (seen.has(sessionId)) throw new AigridError('ERR_INVALID_ARGUMENT', `shard: session ${sessionId} appears twice in one batch (item ${b})`);
      seen.add(sessionId);
      if (!Number.isInteger(position) || position < 0 || position > 0xffffffff) {
        throw new AigridError('ERR_INVALID_ARGUMENT', `shard: item ${b}'s position must be an integer >= 0, got ${position}`);
      }
      return this.admit(hidden ?? null, Uint32Array.of(position), sessionId, layers, ends);
    });
    let hidden: Float32Array | null = null;
    if (!ends.input) {
      hidden = new Float32Array(items.length * H);
      items.forEach((item, b) => hidden!.set(item.hidden!, b * H));
    }
    const out = await this.pass(entries, hidden, Uint32Array.from(items, (item) => item.position), layers, ends);
    const share = out.length / items.length;
    return items.map((_, b) => out.slice(b * share, (b + 1) * share));
  }

  /** forward()'s checks of one session's input, before anything runs. */
  private admit(hidden: Float32Array | null, positions: Uint32Array, sessionId: string, layers: { start: number; end: number }, ends: PassEnds): PassEntry {
    if (typeof sessionId !== 'string' || sessionId === '') throw new AigridError('ERR_INVALID_ARGUMENT', 'shard: sessionId must be a non-empty string');
    if (!(positions instanceof Uint32Array) || positions.length === 0) {
      throw new AigridError('ERR_INVALID_ARGUMENT', 'shard: positions must be a non-empty Uint32Array, one per token');
    }
    if (!(layers.start >= this.start && layers.end <= this.end && layers.start < layers.end)) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `shard: layers [${layers.start}, ${layers.end}) are not within [${this.start}, ${this.end})`);
    }
    const from = layers.start - this.start;
    const T = positions.length;
    const H = this.config.hiddenSize;
    if (!ends.input === !hidden) throw new AigridError('ERR_INVALID_ARGUMENT', 'shard: a pass takes either hidden states or an embedding of its input, one of the two');
    if (hidden) checkRows('shard: hidden', hidden, T, H);
    const first = positions[0]!;
    const found = this.sessions.lookup(sessionId);
    const cached = typeof found === 'object' ? found.stores[from]!.length : 0;
    if (found === 'evicted' && first !== 0) {
      throw new AigridError('ERR_SESSION_EVICTED', `session ${sessionId}'s KV cache was evicted to make room; replay its tokens from position 0`);
    }
    for (let t = 0; t < T; t++) {
      if (positions[t] !== cached + t) {
        const why = typeof found === 'object' ? `the session has ${cached} cached tokens` : `session ${sessionId} has no cache here, so it starts at 0`;
        throw new AigridError('ERR_INVALID_ARGUMENT', `shard: positions must continue the session's cache: positions[${t}] = ${positions[t]}, expected ${cached + t} (${why})`);
      }
    }
    if (cached + T > this.maxSessionTokens) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `shard: ${cached + T} tokens exceed maxSessionTokens (${this.maxSessionTokens}) of session ${sessionId}`);
    }
    return { id: sessionId, found: typeof found === 'object' ? found : undefined, cached, tokens: T };
  }

  /**
   * Runs the stacked rows of admitted entries (one entry with T tokens, or B entries of one token)
   * and checks the output; on failure every entry's cache is rolled back, or the session evicted.
   */
  private async pass(entries: PassEntry[], hidden: Float32Array | null, positions: Uint32Array, layers: { start: number; end: number }, ends: PassEnds): Promise<Float32Array> {
    const from = layers.start - this.start;
    const to = layers.end - this.start;
    const rows = positions.length;
    const H = this.config.hiddenSize;
    const sessions = entries.map((e) => e.found);
    const counted: KvSession[] = [];
    const mark = (s: KvSession) => {
      s.busy++;
      counted.push(s);
    };
    let result: Promise<Float32Array>;
    try {
      result = this.backend.run((ops) => {
        // Existing sessions are marked busy first, so a new one cannot evict another of this pass.
        for (const s of sessions) if (s) mark(s);
        entries.forEach((e, b) => {
          if (!sessions[b]) mark((sessions[b] = this.sessions.create(e.id)));
        });
        const live = sessions as KvSession[];
        let x = hidden ? ops.input(hidden, [rows, H]) : ends.input!(ops); // [rows, H]
        const pos = ops.indices(positions); // [rows]
        for (let i = from; i < to; i++) {
          // One session: one store for its T rows; a batch: one store per row.
          const kv = live.length === 1 ? live[0]!.stores[i]! : live.map((s) => s.stores[i]!);
          const next = this.layers[i]!.forward(ops, x, pos, kv); // [rows, H]
          ops.free(x);
          x = next;
        }
        return ends.output ? ends.output.record(ops, x) : x;
      });
    } catch (err) {
      for (const s of counted) s.busy--;
      entries.forEach((e, b) => this.undo(sessions[b], e.id, e.cached, e.found === undefined, undefined, from, to));
      throw err;
    }
    try {
      const out = await result;
      const what = `shard: output of layers [${this.start}, ${this.end})${ends.output ? ' and the head' : ''}`;
      checkRows(what, out, ends.output?.rows ?? rows, ends.output?.width ?? H);
      return out;
    } catch (err) {
      entries.forEach((e, b) => this.undo(sessions[b], e.id, e.cached, false, e.cached + e.tokens, from, to));
      throw err;
    } finally {
      for (const s of counted) s.busy--;
    }
  }

  /** Takes a failed pass out of the session's cache, or drops the session when that is not possible. */
  private undo(
    session: KvSession | undefined,
    id: string,
    length: number,
    isNew: boolean,
    expectedLength: number | undefined,
    from: number,
    to: number,
  ): void {
    // Released (and perhaps started again) while the pass was in flight: nothing left to undo.
    if (!session || this.sessions.peek(id) !== session) return;
    if (isNew) {
      this.sessions.release(id);
      return;
    }
    const stores = session.stores.slice(from, to);
    // A later pass may already have been recorded on top; then only a replay can restore the cache.
    const clean = stores.every((s) => s.length >= length && (expectedLength === undefined || s.length === expectedLength));
    if (clean) stores.forEach((s) => s.truncate(length));
    else this.sessions.evict(id);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.sessions.destroy();
    for (const layer of this.layers) layer.dispose(this.backend);
    if (this.ownsBackend) this.backend.destroy();
  }
}
