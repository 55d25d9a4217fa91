// The client's side of sessions along routes of peers, whatever the route's shape: it keeps each
// session's inputs as they went on the wire, so when a hop fails (fail frame, timeout, link
// closed, peer left) it marks the peer bad, takes a route without it, starts a new session there
// and replays the inputs: the new hops rebuild their KV caches from exactly the values the old ones
// saw, so greedy output does not change. RemoteChain (hidden states in and out) and RemoteModel
// (token ids in, logits out) are the two shapes built on it (subclasses that give the shape).
// A route refused because peers assigned the missing layers are still loading them (a replacement
// that just joined) is asked for again with backoff, for a bounded time, instead of failing.
import type { Mesh } from '../mesh/mesh.ts';
import {
  AigridError,
  checkRoute,
  decodeControl,
  decodeHidden,
  decodeLogits,
  describeRoute,
  judge,
  peekIds,
  unwrapSigned,
  randomSessionId,
  ServingFrame,
  SessionFailureSchema,
  SessionSetupSchema,
  type Frame,
  type Hop,
  type Stage,
} from '../../protocol/index.ts';
import { generate, type GenerateOptions, type GenerateResult, type TokenModel } from '../model/generate.ts';
import { RemoteSession, RouteFailure, type SessionRows } from './remote-session.ts';
import type { Route } from '../mesh/signaling-client.ts';
import type { LayerRange, RouteSource } from './routes.ts';
import { Verifier, type Replayed, type VerifyOptions } from './verifier.ts';
import { EvidenceKeeper } from './evidence-keeper.ts';
import { gatherAccusation, type RunRef } from './accuser.ts';
import { UsageMeter } from './usage-meter.ts';

export const DEFAULT_CHUNK_TOKENS = 64;
/** Fewer tokens per prefill frame would waste each hop's per-frame overhead. */
export const MIN_CHUNK_TOKENS = 16;
/** Longest wait for peers still loading the layers of a route asked for (see RouteOptions.routeWaitMs). */
export const DEFAULT_ROUTE_WAIT_MS = 30_000;
/** The first pause before a route is asked for again; pauses double up to the longest. */
const ROUTE_WAIT_FIRST_MS = 200;
const ROUTE_WAIT_LONGEST_MS = 2_000;
/** A `models` broadcast ends a pause, but no sooner than this after the ask before it. */
const ROUTE_ASK_GAP_MS = 100;

export interface RouteOptions {
  mesh: Mesh;
  modelId: string;
  numLayers: number;
  hiddenSize: number;
  routes: RouteSource;
  /** Prefill tokens per input frame (default 64, at least 16). */
  chunkTokens?: number;
  /** Longest wait for progress from a route before it is failed (default 30 s). */
  timeoutMs?: number;
  /** New routes tried for one step before giving up (default 4). */
  maxFailovers?: number;
  /** How long a failed peer stays excluded from routes (default 60 s). */
  badPeerMs?: number;
  onFailover?: (event: FailoverEvent) => void;
  /**
   * Longest wait, per route asked for, while the route source answers ERR_NO_ROUTE but says the
   * peers assigned the missing layers are still loading them (default 30 s; 0: never wait). A
   * layer no peer is assigned fails at once.
   */
  routeWaitMs?: number;
  /** Each pause before a route (or a spot-check's replacement hop) is asked for again. */
  onRouteWait?: (event: RouteWaitEvent) => void;
  /** Spot-checks of finished sessions (with a route source that can replace a hop); none when not given. */
  verify?: VerifyOptions;
}

export interface FailoverEvent {
  sessionId: string;
  route: Hop[];
  error: AigridError;
  /** The peer held at fault, if any. */
  blame?: string;
  /** Rows the next route must replay. */
  replayTokens: number;
}

export interface RouteWaitEvent {
  /** The refusal waited on. */
  error: AigridError;
  /** Time since the first ask, in ms. */
  waitedMs: number;
  /** The longest pause before the next ask, in ms (a `models` broadcast ends it sooner). */
  pauseMs: number;
  /** The layers asked for: the whole model, or a replaced hop's. */
  range?: LayerRange;
}

/** What makes one shape differ from the other: the inputs' width and type, and the stage roles. */
export interface RouteShape {
  /** Values per input row: the hidden size, or 1 (a token id). */
  width: number;
  /** A history buffer of `length` values of the input type. */
  alloc(length: number): SessionRows;
  /** The roles the route's stages take (e.g. the first embeds, the last runs the head). */
  stages(hops: Hop[]): Stage[];
  /** Logits per result when the last stage runs the head. */
  vocabSize?: number;
}

interface ChainSession {
  /** Inputs [length, width] as the wire delivered them. */
  rows: SessionRows;
  length: number;
  remote: RemoteSession | null;
  /** Kept for a spot-check: the route and each run's output (dropped after a failover). */
  record?: { draw: number; route?: Route; remoteId?: string; runs: { end: number; output: Float32Array; request: number }[]; bytes: number };
}

/** Outputs kept per session for a spot-check, at most; a longer session goes unchecked. */
const MAX_RECORDED_BYTES = 64 * 1024 * 1024;

export abstract class RouteRunner {
  private readonly mesh: Mesh;
  private readonly sessions = new Map<string, ChainSession>();
  private readonly remotes = new Map<string, RemoteSession>();
  private readonly bad = new Map<string, number>();
  /** The route each open remote session runs on, as the source gave it. */
  private readonly routeOfRemote = new WeakMap<RemoteSession, Route>();
  private readonly verifier: Verifier | undefined;
  /** Receipts and results of the sessions a check may need as evidence. */
  private readonly keeper: EvidenceKeeper;
  /** Set by close(): sessions released then are not checked (nothing would hear the replays). */
  private closing = false;
  /** Wakes the route waits in progress (close() ends them; a `models` broadcast asks again). */
  private readonly wakers = new Set<(now: boolean) => void>();
  private readonly chunkTokens: number;
  private readonly detach: () => void;
  /** The tokens each hop returned and this client took, reported for credits. */
  private readonly usage: UsageMeter;

  protected constructor(
    private readonly options: RouteOptions,
    private readonly shape: RouteShape,
  ) {
    this.mesh = options.mesh;
    this.chunkTokens = options.chunkTokens ?? DEFAULT_CHUNK_TOKENS;
    if (!Number.isInteger(this.chunkTokens) || this.chunkTokens < MIN_CHUNK_TOKENS || this.chunkTokens > 0xffff) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `chunkTokens must be an integer in [${MIN_CHUNK_TOKENS}, 65535], got ${this.chunkTokens}`);
    }
    const wait = options.routeWaitMs;
    if (wait !== undefined && !(Number.isFinite(wait) && wait >= 0)) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `routeWaitMs must be a number of milliseconds >= 0, got ${wait}`);
    }
    this.keeper = new EvidenceKeeper(this.mesh);
    this.usage = new UsageMeter(options.modelId, (m) => this.mesh.signaling.send(m));
    const { replacing } = options.routes;
    if (options.verify && replacing) {
      const replay = (route: Route, rows: SessionRows, ends: readonly number[]) => this.replay(route, rows, ends);
      // A replacement hop may be loading too: its layers are those of the hop it replaces.
      const patientReplacing = (route: readonly Hop[], peer: string, exclude: readonly string[]) => {
        const hop = route.find((h) => h.peerId === peer);
        return this.patiently(() => replacing(route, peer, exclude), hop && { start: hop.start, end: hop.end });
      };
      // The verifier excludes only the peers it found wrong: their work is not confirmed either.
      const wrong = (peer: string, ms: number) => {
        this.markBad(peer, ms);
        this.usage.wrong(peer);
      };
      this.verifier = new Verifier({ replacing: patientReplacing }, replay, wrong, () => this.badPeers(), {
        accuse: (accused, runs, requestId) => this.accuse(accused, runs, requestId),
        settled: (ids) => {
          ids.forEach((id) => this.keeper.forget(id));
          this.usage.checking(-1);
        },
        ...options.verify,
      });
    }
    const onFrame = (from: string, frame: Frame) => this.onFrame(from, frame);
    const onGone = (peerId: string) => this.peerGone(peerId);
    // The coordinator broadcasts the models when readiness changes: a route waited for may be there.
    const onModels = () => this.wake(false);
    this.mesh.on('frame', onFrame);
    this.mesh.on('disconnect', onGone);
    this.mesh.signaling.on('leave', onGone);
    this.mesh.signaling.on('models', onModels);
    this.detach = () => {
      this.mesh.off('frame', onFrame);
      this.mesh.off('disconnect', onGone);
      this.mesh.signaling.off('leave', onGone);
      this.mesh.signaling.off('models', onModels);
    };
  }

  /** Peers excluded from routes now. */
  badPeers(): string[] {
    const now = Date.now();
    for (const [peer, until] of this.bad) if (until <= now) this.bad.delete(peer);
    return [...this.bad.keys()];
  }

  /** The route a session runs on now (none before its first step or right after a failure). */
  routeOf(sessionId: string): Hop[] | undefined {
    return this.sessions.get(sessionId)?.remote?.hops.map(({ peerId, start, end }) => ({ peerId, start, end }));
  }

  /**
   * Runs T new input rows of a session at positions (continuing it; 0 starts it afresh) and
   * answers what the route's last stage returns for them (hidden rows of the whole run, or logits).
   */
  protected async run(rows: SessionRows, positions: Uint32Array, sessionId: string): Promise<Float32Array> {
    const W = this.shape.width;
    const T = positions.length;
    if (T === 0 || rows.length !== T * W) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `input has ${rows.length} values for ${T} positions of width ${W}`);
    }
    if (positions[0] === 0) this.release(sessionId);
    const state = this.sessions.get(sessionId) ?? { rows: this.shape.alloc(0), length: 0, remote: null };
    for (let t = 0; t < T; t++) {
      if (positions[t] !== state.length + t) {
        throw new AigridError('ERR_INVALID_ARGUMENT', `positions must continue session ${sessionId}: positions[${t}] = ${positions[t]}, expected ${state.length + t}`);
      }
    }
    if (this.verifier && state.length === 0) {
      const draw = this.verifier.draw();
      if (this.verifier.mayCheck(draw)) state.record = { draw, runs: [], bytes: 0 };
    }
    this.sessions.set(sessionId, state);
    this.append(state, rows);
    try {
      const out = await this.runRoute(sessionId, state);
      const record = state.record;
      if (record && state.remote) {
        record.route ??= this.routeOfRemote.get(state.remote);
        record.remoteId ??= state.remote.id;
        record.runs.push({ end: state.length, output: Float32Array.from(out), request: state.remote.lastRequest });
        record.bytes += out.byteLength;
        if (record.bytes > MAX_RECORDED_BYTES) state.record = undefined;
      }
      return out;
    } catch (err) {
      state.length -= T; // the step did not happen; the caller may try it again
      throw err;
    }
  }

  /** Runs the rows the session's route lacks, moving to a new route (and replaying) on failure. */
  private async runRoute(sessionId: string, state: ChainSession): Promise<Float32Array> {
    const W = this.shape.width;
    let previous: RouteFailure | undefined;
    for (let failovers = 0; ; failovers++) {
      let remote = state.remote;
      try {
        try {
          if (!remote) {
            remote = state.remote = await this.openRemote();
            if (state.record) this.keeper.keep(remote.id);
          }
        } catch (err) {
          // No route left after a failure: say which failure excluded the peers it lacks.
          if (previous && err instanceof AigridError && !(err instanceof RouteFailure)) {
            throw new AigridError(err.code, `${err.message} (after route ${failovers} failed: ${previous.message})`, { cause: err });
          }
          throw err;
        }
        const from = remote.synced;
        const out = await remote.run(state.rows.subarray(from * W, state.length * W), from, this.chunkTokens);
        remote.synced = state.length;
        this.usage.ran(remote.hops, state.length - from);
        return out;
      } catch (err) {
        if (!(err instanceof RouteFailure)) throw err;
        previous = err;
        state.record = undefined; // outputs of two routes: nothing to check against one
        const ours = err.blame === this.mesh.peerId;
        if (err.blame && !ours) this.markBad(err.blame);
        if (remote) this.drop(remote);
        if (state.remote === remote) state.remote = null;
        // Our own frame was refused: another route would refuse it too.
        if (ours) throw err;
        if (failovers >= (this.options.maxFailovers ?? 4)) {
          throw new AigridError(err.code, `session ${sessionId} gave up after ${failovers + 1} routes: ${err.message}`);
        }
        this.options.onFailover?.({ sessionId, route: remote ? remote.hops.map(({ peerId, start, end }) => ({ peerId, start, end })) : [], error: err, blame: err.blame, replayTokens: state.length });
      }
    }
  }

  /** generate() over `model` (which runs through this route) as one session, released afterwards. */
  protected async generateWith(model: TokenModel, prompt: readonly number[], options: Omit<GenerateOptions, 'sessionId'> & { sessionId?: string }): Promise<GenerateResult> {
    const sessionId = options.sessionId ?? randomSessionId();
    let finished = false;
    try {
      const result = await generate(model, prompt, { ...options, sessionId });
      finished = result.finishReason !== 'abort';
      return result;
    } finally {
      this.release(sessionId, finished);
    }
  }

  /**
   * Ends a session: its hops drop it and its history is forgotten. `check`: whether it may be
   * spot-checked (false for one that was aborted or failed: what it returned is not an answer).
   */
  release(sessionId: string, check = true): void {
    const state = this.sessions.get(sessionId);
    if (!state) return;
    this.sessions.delete(sessionId);
    this.usage.flush();
    if (state.remote) this.drop(state.remote);
    const record = state.record;
    if (!record?.remoteId) return;
    const rows = state.rows.slice(0, state.length * this.shape.width);
    const checking = this.verifier && record.route && check && !this.closing && this.verifier.consider({ sessionId, remoteId: record.remoteId, route: record.route, rows, runs: record.runs, draw: record.draw });
    if (checking) this.usage.checking(1);
    if (!checking) this.keeper.forget(record.remoteId);
  }

  /** Gathers the evidence against a hop a check caught, judges it as the coordinator will, and sends it. */
  private async accuse(accused: string, runs: readonly [RunRef, RunRef, RunRef], requestId: number): Promise<string> {
    const accusation = await gatherAccusation(this.keeper, this.options.modelId, requestId, accused, runs);
    const serverKey = this.mesh.signaling.serverKey;
    if (!serverKey) return 'not sent: the server has no key to have signed the routes';
    await judge(accusation, { network: this.mesh.network, client: this.mesh.peerId, serverKey });
    const judged = await this.mesh.signaling.accuse(accusation);
    return judged.counted ? `counted against ${judged.accused}` : `not counted: ${judged.code ?? ''} ${judged.message}`.replace('  ', ' ');
  }

  /** Runs inputs on a given route in the given runs, for a spot-check; the session is freed after. */
  private async replay(route: Route, rows: SessionRows, ends: readonly number[]): Promise<Replayed> {
    const W = this.shape.width;
    const remote = await this.openOn(route);
    this.keeper.keep(remote.id);
    try {
      const outputs: Float32Array[] = [];
      let from = 0;
      for (const end of ends) {
        outputs.push(Float32Array.from(await remote.run(rows.subarray(from * W, end * W), from, this.chunkTokens)));
        this.usage.ran(remote.hops, end - from);
        from = end;
      }
      return { outputs, sessionId: remote.id };
    } finally {
      this.drop(remote);
    }
  }

  /** Releases every session and stops listening to the mesh. */
  close(): void {
    this.closing = true;
    for (const id of [...this.sessions.keys()]) this.release(id);
    // Spot-check replays still running end now rather than at their timeout.
    for (const remote of [...this.remotes.values()]) remote.fail(new RouteFailure('ERR_ABORTED', 'the client closed'));
    this.wake(true);
    this.detach();
    this.usage.close();
  }

  private async openRemote(): Promise<RemoteSession> {
    return this.openOn(await this.patiently(() => this.options.routes(this.badPeers())));
  }

  /**
   * Asks for a route, and asks again (pauses from 200 ms doubling to 2 s, jittered, cut short by a
   * `models` broadcast, which the coordinator sends when a peer becomes ready) while it is
   * refused ERR_NO_ROUTE and the source says peers assigned the missing layers are still loading
   * them, for at most routeWaitMs in all. When every assigned peer is ready (the refusal was for our
   * exclusions, or they became ready since it) it asks once more at once. Any other refusal, or one
   * with a layer nobody is assigned, is answered at once; one that outlasts the wait says so.
   */
  private async patiently(ask: () => Promise<Route>, range?: LayerRange): Promise<Route> {
    const { outlook } = this.options.routes;
    const limit = this.options.routeWaitMs ?? DEFAULT_ROUTE_WAIT_MS;
    const started = Date.now();
    let pause = ROUTE_WAIT_FIRST_MS;
    let pauses = 0;
    let lastChance = false;
    for (let asked = 1; ; asked++) {
      try {
        return await ask();
      } catch (err) {
        if (!outlook || limit <= 0 || !(err instanceof AigridError) || err.code !== 'ERR_NO_ROUTE' || this.closing) throw err;
        const waitedMs = Date.now() - started;
        const left = limit - waitedMs;
        if (left <= 0) return this.waitedInVain(err, asked, waitedMs, pauses, 'for peers loading the layers');
        if (lastChance) return this.waitedInVain(err, asked, waitedMs, pauses, 'until every peer assigned them was ready');
        const now = await outlook(range).catch(() => 'unserved' as const);
        if (now === 'ready') {
          lastChance = true;
          continue;
        }
        if (now === 'unserved') return this.waitedInVain(err, asked, waitedMs, pauses, 'until some layer had no peer assigned');
        const pauseMs = Math.round(Math.min(pause * (0.75 + Math.random() / 2), left));
        this.options.onRouteWait?.({ error: err, waitedMs, pauseMs, ...(range ? { range } : {}) });
        pauses++;
        await this.sleep(pauseMs);
        if (this.closing) throw new AigridError('ERR_ABORTED', `the client closed while waiting for a route (${err.message})`);
        pause = Math.min(pause * 2, ROUTE_WAIT_LONGEST_MS);
      }
    }
  }

  /** The last refusal of a route waited for; it says how long the wait was, if there was one. */
  private waitedInVain(err: AigridError, asked: number, waitedMs: number, pauses: number, why: string): never {
    if (pauses === 0) throw err;
    throw new AigridError('ERR_NO_ROUTE', `${err.message} (asked ${asked} times over ${waitedMs} ms, waiting ${why})`, { cause: err });
  }

  /** Ends the route waits' pauses: `now`, or (a `models` broadcast) once ROUTE_ASK_GAP_MS has passed since their ask. */
  private wake(now: boolean): void {
    for (const wake of [...this.wakers]) wake(now);
  }

  /** A pause that close() and a `models` broadcast cut short. */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const started = Date.now();
      const done = () => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve();
      };
      let timer = setTimeout(done, ms);
      const wake = (now: boolean) => {
        if (now) return done();
        // Broadcasts may come every 50 ms: asks stay within the server's route rate however many come.
        clearTimeout(timer);
        timer = setTimeout(done, Math.max(0, started + Math.min(ms, ROUTE_ASK_GAP_MS) - Date.now()));
      };
      this.wakers.add(wake);
    });
  }

  private async openOn(route: Route): Promise<RemoteSession> {
    const hops = this.shape.stages(route.hops);
    checkRoute(hops, 0, this.options.numLayers);
    const { mesh, modelId, hiddenSize } = this.options;
    const remote = new RemoteSession({ mesh, modelId, hops, ticket: route.ticket, hiddenSize, vocabSize: this.shape.vocabSize, timeoutMs: this.options.timeoutMs ?? 30_000 });
    this.remotes.set(remote.id, remote);
    this.routeOfRemote.set(remote, route);
    try {
      await remote.open();
    } catch (err) {
      this.drop(remote);
      if (err instanceof RouteFailure) throw new RouteFailure(err.code, `setting up ${describeRoute(hops)}: ${err.message}`, err.blame);
      throw err;
    }
    return remote;
  }

  /** Forgets a remote session and frees it on the hops that are still worth talking to. */
  private drop(remote: RemoteSession): void {
    this.remotes.delete(remote.id);
    remote.release(new Set(this.badPeers()));
  }

  private markBad(peerId: string, ms = this.options.badPeerMs ?? 60_000): void {
    this.bad.set(peerId, Math.max(this.bad.get(peerId) ?? 0, Date.now() + ms));
  }

  private peerGone(peerId: string): void {
    for (const remote of this.remotes.values()) {
      if (!remote.includes(peerId)) continue;
      this.markBad(peerId);
      remote.fail(new RouteFailure('ERR_PEER_CLOSED', `hop ${peerId} left or its link closed`, peerId));
    }
  }

  private onFrame(from: string, received: Frame): void {
    let frame = received;
    try {
      if (frame.type === ServingFrame.signed) {
        const signed = unwrapSigned(frame.payload);
        if (!signed || (signed.type !== ServingFrame.result && signed.type !== ServingFrame.logits)) return;
        const ids = peekIds(signed.payload);
        if (ids && this.remotes.get(ids.sessionId)?.hops.at(-1)?.peerId === from) this.keeper.onResult(frame.payload);
        frame = { ...frame, type: signed.type, payload: signed.payload };
      } else if (frame.type === ServingFrame.result || frame.type === ServingFrame.logits) {
        // Results come signed; one without its leaf could never be shown as evidence.
        const ids = peekIds(frame.payload);
        const remote = ids ? this.remotes.get(ids.sessionId) : undefined;
        if (remote?.hops.at(-1)?.peerId === from) remote.fail(new RouteFailure('ERR_INVALID_ARGUMENT', `result ${ids!.requestId} from ${from} came without its signed leaf`, from));
        return;
      }
      if (frame.type === ServingFrame.kept) this.keeper.onKept(from, frame.payload);
      else if (frame.type === ServingFrame.result) {
        const hidden = decodeHidden(frame.payload);
        this.remotes.get(hidden.header.sessionId)?.onResult(from, hidden);
      } else if (frame.type === ServingFrame.logits) {
        const { header, logits } = decodeLogits(frame.payload);
        this.remotes.get(header.sessionId)?.onLogits(from, header, logits);
      } else if (frame.type === ServingFrame.fail) {
        const failure = decodeControl(SessionFailureSchema, frame.payload, 'fail');
        this.remotes.get(failure.sessionId)?.onFail(from, failure);
      } else if (frame.type === ServingFrame.session) {
        const setup = decodeControl(SessionSetupSchema, frame.payload, 'session');
        if (setup.client === this.mesh.peerId) this.remotes.get(setup.sessionId)?.onAck(from, setup);
      }
    } catch (err) {
      // A result we cannot read fails its session; anything else unreadable is ignored.
      const ids = frame.type === ServingFrame.result || frame.type === ServingFrame.logits ? peekIds(frame.payload) : null;
      const remote = ids ? this.remotes.get(ids.sessionId) : undefined;
      if (remote?.hops.at(-1)?.peerId === from && err instanceof AigridError) {
        remote.fail(new RouteFailure(err.code, `unreadable result from ${from}: ${err.message}`, from));
      }
    }
  }

  /** Appends rows to a session's history, growing its buffer geometrically. */
  private append(state: ChainSession, rows: SessionRows): void {
    const W = this.shape.width;
    const need = state.length * W + rows.length;
    if (need > state.rows.length) {
      const grown = this.shape.alloc(Math.max(need, state.rows.length * 2));
      grown.set(state.rows.subarray(0, state.length * W));
      state.rows = grown;
    }
    state.rows.set(rows, state.length * W);
    state.length += rows.length / W;
  }
}
