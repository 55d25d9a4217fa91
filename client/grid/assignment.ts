// One layer range of one model that a peer was asked to serve: loading its shard from the model's
// source, the serving state the coordinator hears about, and the count of tokens served. For light
// sessions the first hop may also hold the embedding and the last the final norm and LM head.
import { AigridError, type ModelSpec, type ServingState } from '../../protocol/index.ts';
import type { KvDtype } from '../../kernels/kv-cache.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { checkpointOpener, openModel, type CheckpointOpener } from '../model/checkpoint/index.ts';
import type { Backend } from '../model/backend/types.ts';
import type { BackendChoice } from '../model/backend/select.ts';
import { Head } from '../model/head.ts';
import { Shard } from '../model/shard.ts';
import { checkSpecAgainst } from './model-spec.ts';
import { LoadWindow } from './load-window.ts';
import { servingBackend } from './serving-backend.ts';
import { describeDecision, type BackendDecision } from '../model/backend/measure.ts';

/**
 * The head parts a peer holds besides its layers, for light sessions: `embed` lets it be hop 0,
 * `head` the last hop. Either loads the whole Head (embedding, final norm, LM head): Head loads as
 * one piece, and tied models share one matrix anyway.
 */
export interface HeadParts {
  embed?: boolean;
  head?: boolean;
}

/** The opener of a peer that was given none: HTTP ranges, cached as openModel caches them. */
export const defaultOpener: CheckpointOpener = checkpointOpener(openModel, {});

export interface ShardSettings {
  /** Set when the assignment must not load (e.g. it exceeds the peer's budget): reported as failed. */
  refuse?: AigridError;
  /** 'auto' (default) measures both backends on each assigned model's shapes (serving-backend.ts). */
  backend?: Backend | BackendChoice;
  gpu?: GPU | GpuContext;
  /** CPU threads of a CPU backend that 'auto' makes. */
  threads?: number;
  kvBudgetBytes?: number;
  /** Keys and values in f32 (default) or f16 (half the memory: twice the sessions in a budget). */
  kvDtype?: KvDtype;
  maxSessionTokens?: number;
  /** Who a session belongs to (its client), for fair KV eviction. */
  kvOwnerOf?: (sessionId: string) => string | undefined;
}

export class Assignment {
  state: ServingState = 'loading';
  shard: Shard | null = null;
  /** Loaded when `parts` asks for either head part. */
  head: Head | null = null;
  detail: string | undefined;
  /** How 'auto' chose this range's backend (its choice and both timings are also the ready status's detail). */
  decision: BackendDecision | undefined;
  tokensServed = 0;
  /** Its recent passes: what its status reports as load. */
  readonly loadWindow = new LoadWindow();
  /**
   * Assigned by the coordinator: sessions on it need the coordinator's route ticket. Ranges a
   * program assigns directly (its own peers, tests) take sessions on its word.
   */
  ticketed = false;
  /** Weight bytes downloaded (or read) so far for this range, of the total it needs. */
  progress = { bytesDone: 0, bytesTotal: 0 };
  /** Resolves when the shard is ready; rejects with why it could not load. */
  readonly ready: Promise<void>;
  private readonly abort = new AbortController();
  /** The backend 'auto' made for this range: destroyed after the shard and head on it. */
  private ownedBackend: Backend | null = null;

  constructor(
    readonly model: ModelSpec,
    readonly start: number,
    readonly end: number,
    open: CheckpointOpener,
    settings: ShardSettings,
    private readonly onChange: (assignment: Assignment) => void,
    readonly parts: HeadParts = {},
    private readonly onProgress?: (assignment: Assignment) => void,
  ) {
    this.ready = this.load(open, settings);
    this.ready.catch(() => {}); // reported through onChange; callers may also await it
  }

  get modelId(): string {
    return this.model.modelId;
  }

  /** Whether a route may use layers [start, end) here: any sub-range of what is held (routes may enter mid-range). */
  covers(start: number, end: number): boolean {
    return this.start <= start && end <= this.end && start < end;
  }

  private async load(open: CheckpointOpener, settings: ShardSettings): Promise<void> {
    const { model, start, end } = this;
    const signal = this.abort.signal;
    let owned: Backend | null = null;
    try {
      if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end <= start || end > model.numLayers) {
        throw new AigridError('ERR_INVALID_ARGUMENT', `layers [${start}, ${end}) are not a range of ${model.modelId}'s ${model.numLayers}`);
      }
      if (settings.refuse) throw settings.refuse;
      const source = await open(model, signal);
      checkSpecAgainst(model, source);
      const { refuse: _none, threads: _threads, ...shardSettings } = settings;
      const chosen = await servingBackend(source, start, end, model.weightDtype, settings);
      owned = chosen.owned;
      signal.throwIfAborted();
      const onProgress = ({ bytesDone, bytesTotal }: { bytesDone: number; bytesTotal: number }) => {
        this.progress = { bytesDone, bytesTotal };
        this.onProgress?.(this);
      };
      const shard = await Shard.load(source, { ...shardSettings, backend: chosen.backend, start, end, weightDtype: model.weightDtype, signal, onProgress });
      if (signal.aborted) {
        shard.destroy();
        signal.throwIfAborted();
      }
      if (this.parts.embed || this.parts.head) {
        // Sharing the shard's backend keeps one device context; the shard outlives the head.
        const head = await Head.load(source, { backend: shard.backend, weightDtype: model.weightDtype, signal }).catch((err: unknown) => {
          shard.destroy();
          throw err;
        });
        if (signal.aborted) {
          head.destroy();
          shard.destroy();
          signal.throwIfAborted();
        }
        this.head = head;
      }
      this.shard = shard;
      this.ownedBackend = owned;
      if (chosen.decision) [this.decision, this.detail] = [chosen.decision, describeDecision(chosen.decision)];
      this.state = 'ready';
      this.onChange(this);
    } catch (err) {
      if (this.ownedBackend !== owned) owned?.destroy();
      this.state = 'failed';
      this.detail = (err instanceof Error ? err.message : String(err)).slice(0, 256);
      if (!signal.aborted) this.onChange(this);
      throw err;
    }
  }

  destroy(): void {
    this.abort.abort(new AigridError('ERR_INVALID_ARGUMENT', `${this.modelId} [${this.start}, ${this.end}) was unassigned`));
    this.head?.destroy();
    this.head = null;
    this.shard?.destroy();
    this.shard = null;
    this.ownedBackend?.destroy();
    this.ownedBackend = null;
  }
}
