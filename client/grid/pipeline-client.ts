// The client's side of pipeline blocks: asks the coordinator for a replica (a one-hop route with
// its ticket), sends it the texts in a `call` frame, and takes its `answer`. A replica that times
// out, leaves, refuses or is busy is excluded and the next one asked, as sessions fail over; a
// block whose replicas are still loading is waited for. Errors about the input itself end the call.
import type { Mesh } from '../mesh/mesh.ts';
import {
  AigridError,
  decodeControl,
  encodeControl,
  codeOf,
  MAX_PIPELINE_ANSWER_BYTES,
  PipelineAnswerSchema,
  PipelineFrame,
  type Frame,
  type LabelScore,
  type PipelineAnswer,
} from '../../protocol/index.ts';
import { meshRoutes, type RouteSource } from './routes.ts';
import { UsageMeter } from './usage-meter.ts';

export interface PipelineCallOptions {
  /** Longest wait for one replica's answer before the next is asked (default 60 s). */
  timeoutMs?: number;
  /** Longest wait for a replica while the block's replicas are still loading (default 120 s). */
  waitMs?: number;
  signal?: AbortSignal;
}

export interface PipelineResult {
  embeddings?: number[][];
  labels?: LabelScore[][];
  tokens: number;
  /** The replica that answered. */
  peerId: string;
}

/** Replicas tried per call before it fails. */
const MAX_REPLICAS_TRIED = 4;
/** Route sources kept (one per pipeline model called; the caller names them). */
const MAX_SOURCES = 64;
/** Refusals that say nothing about other replicas: the input itself was wrong. */
const FINAL_CODES = new Set(['ERR_INVALID_ARGUMENT', 'ERR_ABORTED']);

interface Pending {
  peerId: string;
  settle: (answer: PipelineAnswer | AigridError) => void;
}

export class PipelineCaller {
  private readonly pending = new Map<number, Pending>();
  private readonly sources = new Map<string, RouteSource>();
  /** Calls answered, reported per model for credits as sessions' tokens are. */
  private readonly meters = new Map<string, UsageMeter>();
  private nextId = 1;
  private readonly onFrame = (from: string, frame: Frame) => this.answered(from, frame);
  private readonly onDisconnect = (peerId: string) => {
    for (const p of [...this.pending.values()]) if (p.peerId === peerId) p.settle(new AigridError('ERR_PEER_CLOSED', `replica ${peerId} disconnected`));
  };

  constructor(private readonly mesh: Mesh) {
    mesh.on('frame', this.onFrame);
    mesh.on('disconnect', this.onDisconnect);
  }

  /** Runs `inputs` on a replica of the pipeline served as `modelId`. */
  async call(modelId: string, inputs: string[], options: PipelineCallOptions = {}): Promise<PipelineResult> {
    const exclude: string[] = [];
    const waitUntil = Date.now() + (options.waitMs ?? 120_000);
    let last: AigridError | undefined;
    for (let tried = 0; tried < MAX_REPLICAS_TRIED; tried++) {
      if (options.signal?.aborted) throw new AigridError('ERR_ABORTED', 'the pipeline call was aborted');
      const route = await this.replica(modelId, exclude, waitUntil, last);
      const peerId = route.hops[0]!.peerId;
      const answer = await this.ask(peerId, modelId, inputs, route.ticket, options);
      if (!(answer instanceof AigridError) && answer.ok) {
        this.meter(modelId).called(peerId, 0, 1);
        return { tokens: answer.tokens, peerId, ...(answer.embeddings ? { embeddings: answer.embeddings } : {}), ...(answer.labels ? { labels: answer.labels } : {}) };
      }
      last = answer instanceof AigridError ? answer : new AigridError(codeOf(answer.code), `replica ${peerId}: ${answer.message}`);
      if (FINAL_CODES.has(last.code)) throw last;
      exclude.push(peerId);
    }
    throw new AigridError(last?.code ?? 'ERR_NO_ROUTE', `${modelId}: ${MAX_REPLICAS_TRIED} replicas failed; the last: ${last?.message}`, { cause: last });
  }

  close(): void {
    for (const meter of this.meters.values()) meter.close();
    this.mesh.off('frame', this.onFrame);
    this.mesh.off('disconnect', this.onDisconnect);
    for (const p of [...this.pending.values()]) p.settle(new AigridError('ERR_PEER_CLOSED', 'the grid connection was closed'));
  }

  /** A replica not excluded; while the block's replicas load, asks again until `waitUntil`. */
  private async replica(modelId: string, exclude: string[], waitUntil: number, last?: AigridError) {
    const source = this.source(modelId);
    for (let pause = 100; ; pause = Math.min(pause * 2, 2000)) {
      try {
        return await source(exclude);
      } catch (err) {
        const error = err as AigridError;
        if (error.code !== 'ERR_NO_ROUTE') throw error;
        const outlook = (await source.outlook?.().catch(() => 'unserved' as const)) ?? 'unserved';
        // Excluded replicas only: nothing to wait for.
        if (outlook === 'ready' && exclude.length) throw last ?? error;
        if (outlook === 'unserved' || Date.now() + pause > waitUntil) throw outlook === 'unserved' ? error : new AigridError('ERR_NO_ROUTE', `${modelId}: no replica became ready in time: ${error.message}`);
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
  }

  private meter(modelId: string): UsageMeter {
    let meter = this.meters.get(modelId);
    if (!meter) {
      if (this.meters.size >= MAX_SOURCES) {
        const [oldest, first] = this.meters.entries().next().value!;
        first.close();
        this.meters.delete(oldest);
      }
      this.meters.set(modelId, (meter = new UsageMeter(modelId, (m) => this.mesh.signaling.send(m))));
    }
    return meter;
  }

  private source(modelId: string): RouteSource {
    let source = this.sources.get(modelId);
    if (!source) {
      if (this.sources.size >= MAX_SOURCES) this.sources.delete(this.sources.keys().next().value!);
      this.sources.set(modelId, (source = meshRoutes(this.mesh, modelId)));
    }
    return source;
  }

  private ask(peerId: string, modelId: string, inputs: string[], ticket: unknown, options: PipelineCallOptions): Promise<PipelineAnswer | AigridError> {
    const callId = this.nextId++ % 0xffffffff;
    return new Promise((resolve) => {
      const release = this.mesh.hold(peerId);
      const abort = () => settle(new AigridError('ERR_ABORTED', 'the pipeline call was aborted'));
      const timer = setTimeout(() => settle(new AigridError('ERR_PEER_TIMEOUT', `replica ${peerId} gave no answer in ${options.timeoutMs ?? 60_000} ms`)), options.timeoutMs ?? 60_000);
      const settle = (answer: PipelineAnswer | AigridError) => {
        if (!this.pending.delete(callId)) return;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', abort);
        release();
        resolve(answer);
      };
      this.pending.set(callId, { peerId, settle });
      options.signal?.addEventListener('abort', abort);
      const call = { callId, modelId, client: this.mesh.peerId, inputs, ...(ticket ? { ticket } : {}) };
      this.mesh.send(peerId, PipelineFrame.call, encodeControl(call)).catch((err: unknown) => settle(err instanceof AigridError ? err : new AigridError('ERR_CONNECTION_FAILED', String(err))));
    });
  }

  /** An answer counts only from the replica the call went to. */
  private answered(from: string, frame: Frame): void {
    if (frame.type !== PipelineFrame.answer) return;
    let answer: PipelineAnswer;
    try {
      answer = decodeControl(PipelineAnswerSchema, frame.payload, 'pipeline answer', MAX_PIPELINE_ANSWER_BYTES);
    } catch {
      return;
    }
    const pending = this.pending.get(answer.callId);
    if (pending?.peerId === from) pending.settle(answer);
  }
}
