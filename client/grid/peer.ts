// A serving peer: takes layer assignments (from the coordinator or directly), loads the shard,
// reports its state, and answers serving frames. Each frame is handled as it arrives, so many
// sessions are in flight at once; the shard's per-session KV caches keep them apart. Nothing a
// remote sends can crash it: every refusal is a `fail` frame to the session's client.
import { EventEmitter } from 'events';
import type { Mesh } from '../mesh/mesh.ts';
import { AigridError, MAX_USAGE_ENTRIES, PipelineFrame, ServingFrame, STATUS_REPORT_MS, type ServedUsage, type Frame, type LoadReport, type ModelSpec, type ServingState } from '../../protocol/index.ts';
import type { CheckpointOpener } from '../model/checkpoint/index.ts';
import { Assignment, defaultOpener, type HeadParts, type ShardSettings } from './assignment.ts';
import { HopSessions } from './hop-sessions.ts';
import { remoteWeights } from './remote-source.ts';
import type { BatchStats } from './decode-batcher.ts';
import { HopServer, type SessionLimits } from './hop-server.ts';
import { UsageCounts } from './usage-counts.ts';
import { PipelineHost, type PipelineLoader } from './pipeline-host.ts';
import { loadPipeline } from '../model/pipeline.ts';
import { announcedThroughput } from './serving-backend.ts';

export const DEFAULT_SESSION_IDLE_MS = 5 * 60_000;
/** The coordinator takes a peer silent for several of these for stuck, and routes around it. */
export const DEFAULT_STATUS_INTERVAL_MS = STATUS_REPORT_MS;

export interface GridPeerOptions extends ShardSettings {
  mesh: Mesh;
  /** How weights are opened (default: openModel over HTTP; Node: checkpointOpener(openModelNode, ...)). */
  open?: CheckpointOpener;
  /** Sessions unused this long are released (default 5 min). */
  sessionIdleMs?: number;
  /**
   * How often a serving peer repeats its status, with its load, to the server (default 10 s); the
   * server leaves a peer silent for many of its default intervals out of routes.
   */
  statusIntervalMs?: number;
  /** Act on the server's assign/unassign messages (default true). */
  followAssignments?: boolean;
  /** Sessions kept per client and in all (default 64 and 1024); more are refused ERR_TOO_MANY_SESSIONS. */
  sessionLimits?: SessionLimits;
  /**
   * Loads the whole-model pipelines the coordinator assigns (only peers whose capabilities list
   * the task are assigned one). Default: transformers.js on the CPU in Node, WebAssembly in pages.
   */
  loadPipeline?: PipelineLoader;
  /** Where onnxruntime-web's .wasm files are served from, for the default loader in pages. */
  pipelineWasmPaths?: string;
}

export interface ServingStatus {
  modelId: string;
  start: number;
  end: number;
  state: ServingState;
  sessions: number;
  tokensServed: number;
  /** Over the last load window (load-window.ts), once ready. */
  load?: LoadReport;
  detail?: string;
  /** In reports: tokens run per client and layer range since the last one (credits). */
  usage?: ServedUsage[];
}

export interface LoadingProgress {
  modelId: string;
  start: number;
  end: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface GridPeerEvents {
  status: [status: ServingStatus];
  /** Weight bytes loaded so far for an assigned range. */
  progress: [progress: LoadingProgress];
  /** Refused frames and failed sends: worth logging, never fatal. */
  warning: [error: AigridError];
}

const MB = 1024 * 1024;
/** Even a peer whose layers fill its budget keeps room for a few sessions' caches. */
const MIN_KV_BUDGET_BYTES = 8 * MB;

export class GridPeer extends EventEmitter<GridPeerEvents> {
  readonly mesh: Mesh;
  private readonly assignments = new Map<string, Assignment>();
  private readonly sessions: HopSessions;
  private readonly server: HopServer;
  /** Per assignment, the tokens run for each client since its last status. */
  private readonly usage = new WeakMap<Assignment, UsageCounts>();
  private readonly pipelines: PipelineHost;
  private readonly statusTimer: ReturnType<typeof setInterval>;
  private readonly detach: (() => void)[] = [];
  private closed = false;

  constructor(private readonly options: GridPeerOptions) {
    super();
    this.mesh = options.mesh;
    this.sessions = new HopSessions(options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS);
    this.server = new HopServer(this.mesh, this.sessions, {
      assignmentOf: (modelId) => this.assignments.get(modelId),
      warn: (err) => this.emit('warning', err),
      ran: ({ assignment, setup, stage }, tokens) => {
        let counts = this.usage.get(assignment);
        if (!counts) this.usage.set(assignment, (counts = new UsageCounts()));
        counts.add(setup.client, stage.start, stage.end, tokens);
      },
    }, options.sessionLimits);
    this.pipelines = new PipelineHost(this.mesh, {
      load: options.loadPipeline ?? ((spec) => this.defaultPipeline(spec)),
      report: (status) => this.reportStatus(status),
      warn: (err) => this.emit('warning', err),
    });
    this.statusTimer = setInterval(() => this.reportAll(), options.statusIntervalMs ?? DEFAULT_STATUS_INTERVAL_MS);
    (this.statusTimer as { unref?: () => void }).unref?.();

    const signaling = this.mesh.signaling;
    const onFrame = (from: string, frame: Frame) => this.onFrame(from, frame);
    const onLeave = (peerId: string) => {
      // A client that left takes its sessions with it.
      for (const s of this.sessions.filter((x) => x.setup.client === peerId)) s.release();
    };
    const onWelcome = () => this.reportAll(); // a restarted server knows nothing of us
    const onAssign = (msg: { model: ModelSpec; start: number; end: number }) => {
      // A model served for light clients puts its embedding and head on the peers at its ends.
      const light = msg.model.light === true;
      const parts = { embed: light && msg.start === 0, head: light && msg.end === msg.model.numLayers };
      let model: ModelSpec;
      let refuse: AigridError | undefined;
      try {
        model = remoteWeights(msg.model);
      } catch (err) {
        [model, refuse] = [msg.model, err as AigridError];
      }
      if (model.pipeline) return this.pipelines.assign(model, refuse);
      this.load(model, msg.start, msg.end, parts, refuse, true).catch(() => {}); // reported as status 'failed'
    };
    const onUnassign = (modelId: string) => this.unassign(modelId);
    this.mesh.on('frame', onFrame);
    signaling.on('leave', onLeave);
    signaling.on('welcome', onWelcome);
    if (options.followAssignments !== false) {
      signaling.on('assign', onAssign);
      signaling.on('unassign', onUnassign);
      // A server that remembered our range may have said so before we listened (we restarted).
      for (const msg of signaling.takeHeldAssignments()) onAssign(msg);
    }
    this.detach.push(
      () => this.mesh.off('frame', onFrame),
      () => signaling.off('leave', onLeave),
      () => signaling.off('welcome', onWelcome),
      () => signaling.off('assign', onAssign),
      () => signaling.off('unassign', onUnassign),
    );
  }

  get peerId(): string {
    return this.mesh.peerId;
  }

  /**
   * Serves layers [start, end) of a model: loads the shard and resolves when it is ready (rejects
   * when it fails to load). A new range of the same model replaces the old one. `parts` adds the
   * embedding (to be hop 0 of light sessions) or the final norm and LM head (their last hop).
   */
  assign(model: ModelSpec, start: number, end: number, parts: HeadParts = {}): Promise<void> {
    return this.load(model, start, end, parts);
  }

  /**
   * `refuse`: the assignment is reported failed with this reason instead of loading. `ticketed`:
   * the coordinator assigned it, so its sessions need the coordinator's route tickets.
   */
  private load(model: ModelSpec, start: number, end: number, parts: HeadParts, refuse?: AigridError, ticketed = false): Promise<void> {
    if (this.closed) return Promise.reject(new AigridError('ERR_PEER_CLOSED', 'the grid peer is closed'));
    const current = this.assignments.get(model.modelId);
    if (!refuse && current && current.start === start && current.end === end && current.state !== 'failed' && sameSpec(current.model, model) && sameParts(current.parts, parts)) {
      current.ticketed ||= ticketed;
      this.report(current); // the coordinator may have restarted or re-sent it: tell it where we stand
      return current.ready;
    }
    if (current) this.unassign(model.modelId);
    const settings = refuse ? { ...this.options, refuse } : this.budgeted(model, start, end, parts);
    const onProgress = (a: Assignment) => {
      if (this.assignments.get(a.modelId) === a) this.emit('progress', { modelId: a.modelId, start: a.start, end: a.end, ...a.progress });
    };
    const onChange = (a: Assignment) => {
      this.announceBackend(a);
      this.report(a);
    };
    const assignment = new Assignment(model, start, end, this.options.open ?? defaultOpener, settings, onChange, { ...parts }, onProgress);
    assignment.ticketed = ticketed;
    this.assignments.set(model.modelId, assignment);
    this.report(assignment);
    return assignment.ready;
  }

  /**
   * The memory budget the peer announced is enforced, not advisory: a range whose layers exceed it
   * fails to load (ERR_INSUFFICIENT_MEMORY), and the KV caches get what the layers leave.
   */
  private budgeted(model: ModelSpec, start: number, end: number, parts: HeadParts): ShardSettings {
    const budgetBytes = this.mesh.signaling.capabilities.memoryBudgetMB * MB;
    const headBytes = parts.embed || parts.head ? (model.headBytes ?? 0) : 0;
    const layerBytes = (end - start) * model.layerBytes + headBytes;
    if (layerBytes > budgetBytes) {
      const what = `${model.modelId} layers [${start}, ${end})${headBytes ? ' with the head parts' : ''}`;
      return { ...this.options, refuse: new AigridError('ERR_INSUFFICIENT_MEMORY', `${what} need ${Math.ceil(layerBytes / MB)} MB; this peer offers ${budgetBytes / MB} MB`) };
    }
    const left = budgetBytes - layerBytes;
    // KV memory is shared fairly among the clients with sessions here.
    const kvOwnerOf = (sessionId: string) => this.sessions.get(sessionId)?.setup.client;
    return { ...this.options, kvOwnerOf, kvBudgetBytes: this.options.kvBudgetBytes ?? Math.max(MIN_KV_BUDGET_BYTES, left) };
  }

  /** Stops serving a model: its sessions are released and its shard freed. */
  unassign(modelId: string): void {
    this.pipelines.unassign(modelId);
    const assignment = this.assignments.get(modelId);
    if (!assignment) return;
    this.assignments.delete(modelId);
    for (const s of this.sessions.filter((x) => x.assignment === assignment)) s.release();
    if (assignment.shard) this.server.batcher.forget(assignment.shard);
    assignment.destroy();
  }

  /** What this peer serves now. */
  status(): ServingStatus[] {
    return [...[...this.assignments.values()].map((a) => this.statusOf(a)), ...this.pipelines.status()];
  }

  /** What a model's layers run on here, once loaded ('auto' chose it by measuring: see its status detail). */
  backendOf(modelId: string): 'webgpu' | 'cpu' | undefined {
    return this.assignments.get(modelId)?.shard?.backend.kind;
  }

  /** How decode steps were batched: passes, steps and the largest batch. */
  get batchStats(): BatchStats {
    return { ...this.server.batcher.stats };
  }

  /** Sessions this peer takes part in. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Stops serving (the mesh stays the caller's). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.statusTimer);
    for (const off of this.detach) off();
    for (const id of [...this.assignments.keys()]) this.unassign(id);
    this.pipelines.close();
    this.sessions.close();
  }

  private onFrame(from: string, frame: Frame): void {
    if (this.closed) return;
    switch (frame.type) {
      case ServingFrame.session:
        return void this.server.onSetup(from, frame.payload);
      case ServingFrame.forward:
      case ServingFrame.tokens:
        return this.server.onInput(from, frame.type, frame.payload);
      case ServingFrame.release:
        return this.server.onRelease(from, frame.payload);
      case ServingFrame.fail:
        return this.server.onFail(from, frame.payload);
      case ServingFrame.ask:
        return this.server.onAsk(from, frame.payload);
      case ServingFrame.signed:
        return this.server.onSigned(from, frame.payload);
      case PipelineFrame.call:
        return this.pipelines.onCall(from, frame.payload);
    }
  }

  private statusOf(a: Assignment): ServingStatus {
    const sessions = this.sessions.count((s) => s.assignment === a);
    const status: ServingStatus = { modelId: a.modelId, start: a.start, end: a.end, state: a.state, sessions, tokensServed: a.tokensServed };
    if (a.state === 'ready') status.load = a.loadWindow.report();
    if (a.detail !== undefined) status.detail = a.detail;
    return status;
  }

  /** The backend 'auto' measured faster is the one this peer announces it serves with. */
  private announceBackend(a: Assignment): void {
    if (a.state !== 'ready' || !a.decision || this.assignments.get(a.modelId) !== a) return;
    const capabilities = this.mesh.signaling.capabilities;
    const throughput = announcedThroughput(capabilities.throughput, a.decision);
    if (throughput) this.mesh.updateCapabilities({ ...capabilities, throughput });
  }

  private report(a: Assignment): void {
    if (this.assignments.get(a.modelId) !== a) return; // replaced while it loaded
    const usage = this.usage.get(a)?.take(MAX_USAGE_ENTRIES).map(({ party, start, end, tokens }) => ({ client: party, start, end, tokens }));
    this.reportStatus({ ...this.statusOf(a), ...(usage?.length ? { usage } : {}) });
  }

  private reportStatus(status: ServingStatus): void {
    this.mesh.signaling.send({ type: 'status', ...status });
    this.emit('status', status);
  }

  private reportAll(): void {
    for (const a of this.assignments.values()) this.report(a);
    this.pipelines.reportAll();
  }

  private defaultPipeline(spec: ModelSpec) {
    const device = this.mesh.signaling.capabilities.kind === 'node' ? 'cpu' : 'wasm';
    const wasmPaths = this.options.pipelineWasmPaths;
    return loadPipeline(spec.pipeline!.task, spec.source, { device, ...(wasmPaths ? { wasmPaths } : {}) });
  }
}

function sameSpec(a: ModelSpec, b: ModelSpec): boolean {
  return a.source === b.source && a.baseUrl === b.baseUrl && a.revision === b.revision && a.weightDtype === b.weightDtype;
}

function sameParts(a: HeadParts, b: HeadParts): boolean {
  return !a.embed === !b.embed && !a.head === !b.head;
}
