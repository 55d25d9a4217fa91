// The client side of a model served by peers: a LayerChain for generate() that runs every layer
// along a route of peers. It keeps each session's hidden inputs as they went on the wire, so when
// a hop fails (fail frame, timeout, link closed, peer left) it marks the peer bad, takes a route
// without it, starts a new session there and replays the inputs: the new hops rebuild their KV
// caches from exactly the values the old ones saw, so greedy output does not change.
// In light mode (option `light`, with `lightHead` as generate()'s head) the "hidden" rows are token
// ids of width 1, hop 0 embeds them, and each step returns the last token's logits: a replay
// resends the ids, which hop 0 embeds to the same values.
import type { Mesh } from '../mesh/mesh.ts';
import { generate, type GenerateOptions, type GenerateResult, type HeadLike, type LayerChain } from '../model/generate.ts';
import { AigridError, decodeLogits, randomSessionId, ServingFrame, type Frame, type Hop } from '../../protocol/index.ts';
import { RemoteSession, RouteFailure } from './remote-session.ts';
import type { RouteSource } from './routes.ts';
import { checkRoute, decodeHidden, decodeJson, describeRoute, GridFailureSchema, peekIds, SessionSetupSchema, wireRound } from './wire.ts';

export const DEFAULT_CHUNK_TOKENS = 64;
/** Fewer tokens per prefill frame would waste each hop's per-frame overhead. */
export const MIN_CHUNK_TOKENS = 16;

export interface RemoteChainOptions {
  mesh: Mesh;
  modelId: string;
  numLayers: number;
  hiddenSize: number;
  routes: RouteSource;
  /** Prefill tokens per forward frame (default 64, at least 16). */
  chunkTokens?: number;
  /** Longest wait for progress from a route before it is failed (default 30 s). */
  timeoutMs?: number;
  /** New routes tried for one step before giving up (default 4). */
  maxFailovers?: number;
  /** How long a failed peer stays excluded from routes (default 60 s). */
  badPeerMs?: number;
  onFailover?: (event: FailoverEvent) => void;
  /** Light sessions: send token ids, receive logits [vocabSize]; generate() takes `lightHead`. */
  light?: { vocabSize: number };
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

interface ChainSession {
  /** Hidden inputs [length, H] as the wire delivered them (light: token ids [length, 1]). */
  rows: Float32Array;
  length: number;
  remote: RemoteSession | null;
}

export class RemoteChain {
  /** The chain as generate() takes it. */
  readonly layers: LayerChain = (hidden, positions, sessionId) => this.forward(hidden, positions, sessionId);
  private readonly mesh: Mesh;
  private readonly sessions = new Map<string, ChainSession>();
  private readonly remotes = new Map<string, RemoteSession>();
  private readonly bad = new Map<string, number>();
  private readonly chunkTokens: number;
  /** Values per row the chain takes: the hidden size, or 1 (a token id) in light mode. */
  private readonly width: number;
  private readonly detach: () => void;

  constructor(private readonly options: RemoteChainOptions) {
    this.mesh = options.mesh;
    this.chunkTokens = options.chunkTokens ?? DEFAULT_CHUNK_TOKENS;
    this.width = options.light ? 1 : options.hiddenSize;
    const V = options.light?.vocabSize;
    if (V !== undefined && (!Number.isInteger(V) || V < 1)) throw new AigridError('ERR_INVALID_ARGUMENT', `light.vocabSize must be a positive integer, got ${V}`);
    if (!Number.isInteger(this.chunkTokens) || this.chunkTokens < MIN_CHUNK_TOKENS || this.chunkTokens > 0xffff) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `chunkTokens must be an integer in [${MIN_CHUNK_TOKENS}, 65535], got ${this.chunkTokens}`);
    }
    const onFrame = (from: string, frame: Frame) => this.onFrame(from, frame);
    const onGone = (peerId: string) => this.peerGone(peerId);
    this.mesh.on('frame', onFrame);
    this.mesh.on('disconnect', onGone);
    this.mesh.signaling.on('leave', onGone);
    this.detach = () => {
      this.mesh.off('frame', onFrame);
      this.mesh.off('disconnect', onGone);
      this.mesh.signaling.off('leave', onGone);
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
    return this.sessions.get(sessionId)?.remote?.hops.map((h) => ({ ...h }));
  }

  /**
   * hidden [T, H] at positions (continuing the session; 0 starts it afresh) -> [T, H] after every
   * layer. Light mode: token ids [T] -> the last token's logits [V].
   */
  async forward(hidden: Float32Array, positions: Uint32Array, sessionId: string): Promise<Float32Array> {
    const H = this.width;
    const T = positions.length;
    if (T === 0 || hidden.length !== T * H) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `hidden has ${hidden.length} values for ${T} positions of width ${H}`);
    }
    if (positions[0] === 0) this.release(sessionId);
    const state = this.sessions.get(sessionId) ?? { rows: new Float32Array(0), length: 0, remote: null };
    for (let t = 0; t < T; t++) {
      if (positions[t] !== state.length + t) {
        throw new AigridError('ERR_INVALID_ARGUMENT', `positions must continue session ${sessionId}: positions[${t}] = ${positions[t]}, expected ${state.length + t}`);
      }
    }
    this.sessions.set(sessionId, state);
    append(state, this.options.light ? hidden.slice() : wireRound(hidden), H);
    try {
      return await this.run(sessionId, state, T);
    } catch (err) {
      state.length -= T; // the step did not happen; the caller may try it again
      throw err;
    }
  }

  /** Runs the rows the session's route lacks, moving to a new route (and replaying) on failure. */
  private async run(sessionId: string, state: ChainSession, T: number): Promise<Float32Array> {
    const H = this.width;
    for (let failovers = 0; ; failovers++) {
      let remote = state.remote;
      try {
        remote ??= state.remote = await this.openRemote();
        const from = remote.synced;
        const out = await remote.run(state.rows.subarray(from * H, state.length * H), from, this.chunkTokens);
        remote.synced = state.length;
        return this.options.light ? out : out.slice(out.length - T * H);
      } catch (err) {
        if (!(err instanceof RouteFailure)) throw err;
        const ours = err.blame === this.mesh.peerId;
        if (err.blame && !ours) this.markBad(err.blame);
        if (remote) this.drop(remote);
        if (state.remote === remote) state.remote = null;
        // Our own frame was refused: another route would refuse it too.
        if (ours) throw err;
        if (failovers >= (this.options.maxFailovers ?? 4)) {
          throw new AigridError(err.code, `session ${sessionId} gave up after ${failovers + 1} routes: ${err.message}`);
        }
        this.options.onFailover?.({ sessionId, route: remote ? [...remote.hops] : [], error: err, blame: err.blame, replayTokens: state.length });
      }
    }
  }

  /** Ends a session: its hops free their caches and its history is dropped. */
  release(sessionId: string): void {
    const state = this.sessions.get(sessionId);
    if (!state) return;
    this.sessions.delete(sessionId);
    if (state.remote) this.drop(state.remote);
  }

  /** generate() over this chain, releasing the session afterwards. */
  async generate(head: HeadLike, prompt: readonly number[], options: Omit<GenerateOptions, 'sessionId'> & { sessionId?: string }): Promise<GenerateResult> {
    const sessionId = options.sessionId ?? randomSessionId();
    try {
      return await generate(head, this.layers, prompt, { ...options, sessionId });
    } finally {
      this.release(sessionId);
    }
  }

  close(): void {
    for (const id of [...this.sessions.keys()]) this.release(id);
    this.detach();
  }

  private async openRemote(): Promise<RemoteSession> {
    const hops = await this.options.routes(this.badPeers());
    checkRoute(hops, 0, this.options.numLayers);
    const { mesh, modelId, hiddenSize } = this.options;
    const remote = new RemoteSession({ mesh, modelId, hops, hiddenSize, timeoutMs: this.options.timeoutMs ?? 30_000, light: this.options.light });
    this.remotes.set(remote.id, remote);
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

  private markBad(peerId: string): void {
    this.bad.set(peerId, Date.now() + (this.options.badPeerMs ?? 60_000));
  }

  private peerGone(peerId: string): void {
    for (const remote of this.remotes.values()) {
      if (!remote.includes(peerId)) continue;
      this.markBad(peerId);
      remote.fail(new RouteFailure('ERR_PEER_CLOSED', `hop ${peerId} left or its link closed`, peerId));
    }
  }

  private onFrame(from: string, frame: Frame): void {
    try {
      if (frame.type === ServingFrame.result) {
        const hidden = decodeHidden(frame.payload);
        this.remotes.get(hidden.header.sessionId)?.onResult(from, hidden);
      } else if (frame.type === ServingFrame.logits) {
        const { header, logits } = decodeLogits(frame.payload);
        this.remotes.get(header.sessionId)?.onLogits(from, header, logits);
      } else if (frame.type === ServingFrame.fail) {
        const failure = decodeJson(GridFailureSchema, frame.payload, 'fail');
        this.remotes.get(failure.sessionId)?.onFail(from, failure);
      } else if (frame.type === ServingFrame.session) {
        const setup = decodeJson(SessionSetupSchema, frame.payload, 'session');
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
}

/** Appends rows to a session's history, growing its buffer geometrically. */
function append(state: ChainSession, rows: Float32Array, H: number): void {
  const need = (state.length * H) + rows.length;
  if (need > state.rows.length) {
    const grown = new Float32Array(Math.max(need, state.rows.length * 2));
    grown.set(state.rows.subarray(0, state.length * H));
    state.rows = grown;
  }
  state.rows.set(rows, state.length * H);
  state.length += rows.length / H;
}
