// The peer's side of pipeline blocks: loads the whole-model pipelines the coordinator assigns
// (client/model/pipeline.ts), reports their state like layer ranges (one "layer": [0, 1)), and
// answers `call` frames from clients holding the coordinator's ticket for this peer. Calls of one
// pipeline run one at a time; each client has a few in flight and the peer a bounded queue, so a
// stranger cannot pile work up here.
import type { Mesh } from '../mesh/mesh.ts';
import {
  AigridError,
  decodeControl,
  encodeControl,
  MAX_PIPELINE_CALL_BYTES,
  MAX_USAGE_ENTRIES,
  PipelineCallSchema,
  PipelineFrame,
  ticketValid,
  type ModelSpec,
  type PipelineAnswer,
  type PipelineCall,
  type ServingState,
} from '../../protocol/index.ts';
import type { PipelineRunner } from '../model/pipeline.ts';
import { LoadWindow } from './load-window.ts';
import { UsageCounts } from './usage-counts.ts';
import type { ServingStatus } from './peer.ts';

export type PipelineLoader = (spec: ModelSpec) => Promise<PipelineRunner>;

/** Calls waiting or running, per client and on the whole peer. */
export const MAX_PIPELINE_CALLS_PER_CLIENT = 4;
export const MAX_PIPELINE_CALLS = 32;

interface Held {
  spec: ModelSpec;
  state: ServingState;
  detail?: string;
  runner?: PipelineRunner;
  /** The end of the last call queued: calls take turns. */
  tail: Promise<unknown>;
  tokensServed: number;
  load: LoadWindow;
  /** Calls answered per client since the last status (credits: the server settles them). */
  usage: UsageCounts;
  /** A status soon after calls, so their usage reaches the server as a client's does. */
  soon?: ReturnType<typeof setTimeout>;
}

/** How soon after a call its usage is reported (status messages are rate-limited per socket). */
const USAGE_SOON_MS = 1000;

export interface PipelineHostOptions {
  load: PipelineLoader;
  report: (status: ServingStatus) => void;
  warn: (err: AigridError) => void;
}

export class PipelineHost {
  private readonly held = new Map<string, Held>();
  private readonly calls = new Map<string, number>();
  private inFlight = 0;

  constructor(
    private readonly mesh: Mesh,
    private readonly options: PipelineHostOptions,
  ) {}

  has(modelId: string): boolean {
    return this.held.has(modelId);
  }

  /** Loads a pipeline the coordinator assigned (again: reports where it stands). */
  assign(spec: ModelSpec, refuse?: AigridError): void {
    const current = this.held.get(spec.modelId);
    if (current && current.spec.source === spec.source && current.spec.pipeline?.task === spec.pipeline?.task && current.state !== 'failed' && !refuse) {
      return this.report(current);
    }
    if (current) this.unassign(spec.modelId);
    const held: Held = { spec, state: 'loading', tail: Promise.resolve(), tokensServed: 0, load: new LoadWindow(), usage: new UsageCounts() };
    this.held.set(spec.modelId, held);
    this.report(held);
    if (refuse) return this.fail(held, refuse);
    this.options.load(spec).then(
      (runner) => {
        if (this.held.get(spec.modelId) !== held) return void runner.dispose().catch(() => {});
        held.runner = runner;
        held.state = 'ready';
        this.report(held);
      },
      (err: unknown) => this.fail(held, err instanceof AigridError ? err : new AigridError('ERR_FETCH_FAILED', String(err))),
    );
  }

  unassign(modelId: string): void {
    const held = this.held.get(modelId);
    if (!held) return;
    this.held.delete(modelId);
    clearTimeout(held.soon);
    // Calls already queued finish (or fail) first; the pipeline's memory goes after them.
    void held.tail.then(() => held.runner?.dispose()).catch(() => {});
  }

  status(): ServingStatus[] {
    return [...this.held.values()].map((h) => this.statusOf(h));
  }

  reportAll(): void {
    for (const held of this.held.values()) this.report(held);
  }

  close(): void {
    for (const modelId of [...this.held.keys()]) this.unassign(modelId);
  }

  /** A client's call: checked, queued behind the pipeline's earlier calls, answered. */
  onCall(from: string, payload: Uint8Array): void {
    let call: PipelineCall;
    try {
      call = decodeControl(PipelineCallSchema, payload, 'pipeline call', MAX_PIPELINE_CALL_BYTES);
    } catch (err) {
      return this.options.warn(err as AigridError);
    }
    const answer = (a: PipelineAnswer) => this.mesh.send(from, PipelineFrame.answer, encodeControl(a)).catch(() => {});
    const refuse = (code: AigridError['code'], message: string) => answer({ callId: call.callId, ok: false, code, message });
    const held = this.held.get(call.modelId);
    if (call.client !== from) return void refuse('ERR_PERMISSION_DENIED', `a call from ${from} names another client`);
    if (!held || held.state !== 'ready' || !held.runner) return void refuse('ERR_UNKNOWN_MODEL', `${this.mesh.peerId} does not serve ${call.modelId} now`);
    const mine = this.calls.get(from) ?? 0;
    if (mine >= MAX_PIPELINE_CALLS_PER_CLIENT || this.inFlight >= MAX_PIPELINE_CALLS) {
      return void refuse('ERR_OVERLOADED', `${this.mesh.peerId} has ${mine} of this client's calls and ${this.inFlight} in all in flight; try another replica or later`);
    }
    this.calls.set(from, mine + 1);
    this.inFlight++;
    const runner = held.runner;
    const run = async (): Promise<PipelineAnswer> => {
      if (!(await this.ticketHolds(call))) throw new AigridError('ERR_PERMISSION_DENIED', `call ${call.callId} has no valid ticket from the coordinator for ${this.mesh.peerId} and this client`);
      const pass = held.load.begin();
      try {
        const out = await runner.run(call.inputs);
        held.tokensServed += out.tokens;
        held.usage.add(from, 0, 1, 0, 1);
        held.soon ??= setTimeout(() => {
          held.soon = undefined;
          this.report(held);
        }, USAGE_SOON_MS);
        pass.end(out.tokens, true);
        return { callId: call.callId, ok: true, tokens: out.tokens, ...(out.embeddings ? { embeddings: out.embeddings } : {}), ...(out.labels ? { labels: out.labels } : {}) };
      } catch (err) {
        pass.end();
        throw err instanceof AigridError ? err : new AigridError('ERR_INVALID_ARGUMENT', `${call.modelId} failed on this input: ${(err as Error)?.message ?? String(err)}`);
      }
    };
    const done = held.tail.then(run).then(answer, (err: AigridError) => refuse(err.code, err.message));
    held.tail = done.finally(() => {
      const n = (this.calls.get(from) ?? 1) - 1;
      if (n > 0) this.calls.set(from, n);
      else this.calls.delete(from);
      this.inFlight--;
    });
  }

  private async ticketHolds(call: PipelineCall): Promise<boolean> {
    const key = this.mesh.signaling.serverKey;
    if (!call.ticket || !key) return false;
    const hops = [{ peerId: this.mesh.peerId, start: 0, end: 1 }];
    return ticketValid(key, call.ticket, { network: this.mesh.network, modelId: call.modelId, client: call.client, hops });
  }

  private fail(held: Held, err: AigridError): void {
    if (this.held.get(held.spec.modelId) !== held) return;
    held.state = 'failed';
    held.detail = err.message.slice(0, 256);
    this.report(held);
  }

  private statusOf(h: Held): ServingStatus {
    const status: ServingStatus = { modelId: h.spec.modelId, start: 0, end: 1, state: h.state, sessions: this.inFlight, tokensServed: h.tokensServed };
    if (h.state === 'ready') status.load = h.load.report();
    if (h.detail !== undefined) status.detail = h.detail;
    return status;
  }

  private report(h: Held): void {
    if (this.held.get(h.spec.modelId) !== h) return;
    const usage = h.usage.take(MAX_USAGE_ENTRIES).map(({ party, start, end, tokens, calls }) => ({ client: party, start, end, tokens, calls }));
    this.options.report({ ...this.statusOf(h), ...(usage.length ? { usage } : {}) });
  }
}
