// A serving peer's answers to serving frames. `session`: check the route, link to the next hop,
// acknowledge by echoing the setup to the client. `forward`: check, run the shard, pass on to the
// next hop or return to the client as `result`. `release`: free and pass on. `fail` from a later
// hop: relay to the client. Refusals go out as `fail` frames naming the peer held at fault.
// Light sessions: hop 0 takes `tokens` frames and embeds them; the last hop returns `logits`.
import type { Mesh } from '../mesh/mesh.ts';
import { AigridError, decodeTokenIds, encodeLogits, isErrorCode, ServingFrame, type PassHeader } from '../../protocol/index.ts';
import type { Assignment } from './assignment.ts';
import { DecodeBatcher } from './decode-batcher.ts';
import type { HopSession, HopSessions } from './hop-sessions.ts';
import {
  checkRoute,
  decodeHidden,
  decodeJson,
  encodeHidden,
  encodeJson,
  errorCode,
  errorMessage,
  GridFailureSchema,
  peekIds,
  ReleaseSchema,
  sameSetup,
  SessionSetupSchema,
  type GridFailure,
  type HiddenFrame,
} from './wire.ts';

export interface HopServerHooks {
  shardFor(modelId: string): Assignment | undefined;
  /** Frees a session's caches (it has left the table already). */
  free(session: HopSession): void;
  warn(error: AigridError): void;
}

type Refusal = Omit<GridFailure, 'peerId'>;

export class HopServer {
  /** Decode steps of different sessions run together (continuous batching). */
  readonly batcher = new DecodeBatcher();
  /** Per light session at hop 0: the embedding of its last frame, so passes keep arrival order. */
  private readonly embedding = new WeakMap<HopSession, Promise<unknown>>();

  constructor(
    private readonly mesh: Mesh,
    private readonly sessions: HopSessions,
    private readonly hooks: HopServerHooks,
  ) {}

  async onSetup(from: string, payload: Uint8Array): Promise<void> {
    let setup;
    try {
      setup = decodeJson(SessionSetupSchema, payload, 'session');
    } catch (err) {
      return this.hooks.warn(new AigridError('ERR_FRAME_MALFORMED', `from ${from}: ${errorMessage(err)}`));
    }
    const me = this.mesh.peerId;
    if (setup.client === me) return; // the echo acknowledging a session of our own as a client
    const { sessionId, modelId, hops } = setup;
    const refuse = (code: string, message: string, blame?: string) => this.fail(from, { sessionId, requestId: 0, code, message, blame });
    if (setup.client !== from) return refuse('ERR_INVALID_ARGUMENT', `session ${sessionId} names ${setup.client} as its client but came from ${from}`);
    try {
      checkRoute(hops);
    } catch (err) {
      return refuse(errorCode(err), errorMessage(err));
    }
    const index = hops.findIndex((h) => h.peerId === me);
    const hop = hops[index];
    if (!hop) return refuse('ERR_INVALID_ARGUMENT', `${me} is not on the route of session ${sessionId}`);
    const assignment = this.hooks.shardFor(modelId);
    if (!assignment?.shard) return refuse('ERR_NO_ROUTE', `${me} does not serve ${modelId} now (${assignment?.state ?? 'not assigned'})`);
    if (!assignment.covers(hop.start, hop.end)) {
      return refuse('ERR_INVALID_ARGUMENT', `${me} serves ${modelId} layers [${assignment.start}, ${assignment.end}), not [${hop.start}, ${hop.end})`);
    }
    if (setup.light) {
      const last = index === hops.length - 1;
      const lacks = index === 0 && !assignment.parts.embed ? 'embedding' : last && !assignment.parts.head ? 'LM head' : null;
      if (lacks) return refuse('ERR_NO_ROUTE', `${me} does not hold ${modelId}'s ${lacks}, so it cannot be hop ${index} of a light session`);
    }
    const existing = this.sessions.get(sessionId);
    if (existing && !sameSetup(existing.setup, setup)) {
      return refuse('ERR_INVALID_ARGUMENT', `session ${sessionId} already exists here with another route`);
    }
    const session = existing ?? this.sessions.add(setup, index);
    const next = hops[index + 1];
    if (next) {
      // Linking now means the first forward does not wait for ICE, and a dead next hop is named
      // before any token is sent.
      try {
        await this.mesh.connect(next.peerId);
      } catch (err) {
        this.drop(session);
        return refuse(errorCode(err), `${me} cannot reach the next hop ${next.peerId}: ${errorMessage(err)}`, next.peerId);
      }
    }
    if (this.sessions.get(sessionId) !== session) return;
    this.mesh.send(from, ServingFrame.session, payload).catch(() => this.drop(session));
  }

  /** The session a frame names, and how to refuse it: about a known session to its client, else to the sender. */
  private place(from: string, payload: Uint8Array) {
    const ids = peekIds(payload);
    const session = ids ? this.sessions.get(ids.sessionId) : undefined;
    const sessionId = ids?.sessionId ?? '0000000000000000';
    const requestId = ids?.requestId ?? 0;
    const refuse = (code: string, message: string, blame?: string) =>
      this.fail(session?.setup.client ?? from, { sessionId, requestId, code, message, blame });
    return { session, sessionId, requestId, refuse };
  }

  /** Runs a forward frame; everything before shard.forward is synchronous, so passes keep arrival order. */
  onForward(from: string, payload: Uint8Array, count: (assignment: Assignment, tokens: number) => void): void {
    const { session, sessionId, requestId, refuse } = this.place(from, payload);

    let frame: HiddenFrame;
    try {
      frame = decodeHidden(payload);
    } catch (err) {
      return refuse(errorCode(err), `${this.mesh.peerId} refused a frame from ${from}: ${errorMessage(err)}`, from);
    }
    if (!session) {
      return this.fail(from, { sessionId, requestId, code: 'ERR_SESSION_EVICTED', message: `session ${sessionId} is unknown at ${this.mesh.peerId} (released or never set up); start a new session and replay` });
    }
    if (session.setup.light && session.index === 0) {
      return refuse('ERR_INVALID_ARGUMENT', `hop 0 of light session ${sessionId} takes token ids, not hidden states`, from);
    }
    this.pass(from, session, frame.header, frame.values, refuse, count);
  }

  /** Hop 0 of a light session: embeds the token ids at their positions, then runs its layers. */
  onTokens(from: string, payload: Uint8Array, count: (assignment: Assignment, tokens: number) => void): void {
    const { session, sessionId, requestId, refuse } = this.place(from, payload);
    let frame: { header: PassHeader; ids: Uint32Array };
    try {
      frame = decodeTokenIds(payload);
    } catch (err) {
      return refuse(errorCode(err), `${this.mesh.peerId} refused a frame from ${from}: ${errorMessage(err)}`, from);
    }
    if (!session) {
      return this.fail(from, { sessionId, requestId, code: 'ERR_SESSION_EVICTED', message: `session ${sessionId} is unknown at ${this.mesh.peerId} (released or never set up); start a new session and replay` });
    }
    if (!session.setup.light || session.index !== 0) {
      return refuse('ERR_INVALID_ARGUMENT', `token ids reach only hop 0 of a light session; session ${sessionId} is not one here`, from);
    }
    if (from !== session.setup.client) {
      return this.fail(from, { sessionId, requestId, code: 'ERR_INVALID_ARGUMENT', message: `token ids of session ${sessionId} come from its client, not ${from}` });
    }
    const head = this.hooks.shardFor(session.setup.modelId)?.head;
    if (!head) return refuse('ERR_NO_ROUTE', `${this.mesh.peerId} no longer holds ${session.setup.modelId}'s embedding`);
    const { header } = frame;
    const positions = Uint32Array.from({ length: header.tokens }, (_, i) => header.startPos + i);
    // Embedding is asynchronous: chain it per session so the passes start in arrival order.
    const embedded = (this.embedding.get(session) ?? Promise.resolve()).then(() => head.embed(frame.ids, positions));
    this.embedding.set(session, embedded.catch(() => {}));
    embedded.then(
      (values) => this.pass(from, session, { ...header, hidden: head.config.hiddenSize }, values, refuse, count),
      (err: unknown) => refuse(errorCode(err), `${this.mesh.peerId} cannot embed the tokens of request ${requestId}: ${errorMessage(err)}`, from),
    );
  }

  /** Checks a frame against the session's route and runs this hop's layers on it. */
  private pass(
    from: string,
    session: HopSession,
    header: PassHeader & { hidden: number },
    values: Float32Array,
    refuse: (code: string, message: string, blame?: string) => void,
    count: (assignment: Assignment, tokens: number) => void,
  ): void {
    const { setup, index } = session;
    const sessionId = setup.sessionId;
    const requestId = header.requestId;
    const sender = index === 0 ? setup.client : setup.hops[index - 1]!.peerId;
    if (from !== sender) {
      return this.fail(from, { sessionId, requestId, code: 'ERR_INVALID_ARGUMENT', message: `forward frames of session ${sessionId} at hop ${index} come from ${sender}, not ${from}` });
    }
    const hop = setup.hops[index]!;
    const assignment = this.hooks.shardFor(setup.modelId);
    const shard = assignment?.shard;
    if (!assignment || !shard) return refuse('ERR_NO_ROUTE', `${this.mesh.peerId} no longer serves ${setup.modelId}`);
    const H = shard.config.hiddenSize;
    if (header.hop !== index || header.layerStart !== hop.start || header.layerEnd !== hop.end || header.hidden !== H) {
      return refuse('ERR_SHAPE_MISMATCH', `frame for hop ${header.hop} [${header.layerStart}, ${header.layerEnd}) width ${header.hidden} reached hop ${index} [${hop.start}, ${hop.end}) width ${H}`, from);
    }
    this.sessions.touch(session);
    const T = header.tokens;
    const layers = { start: hop.start, end: hop.end };
    const positions = Uint32Array.from({ length: T }, (_, i) => header.startPos + i);
    // Prefill chunks are recorded at once, in arrival order; decode steps wait for a batch.
    const stages = setup.hops.length + 1; // the hops and the client
    const pass = T === 1 ? this.batcher.step(shard, layers, values, header.startPos, sessionId, stages) : shard.forward(values, positions, sessionId, layers);
    pass.then(
      (out) => {
        count(assignment, T);
        this.passOn(session, { sessionId, requestId, startPos: header.startPos, tokens: T, hop: header.hop, layerStart: header.layerStart, layerEnd: header.layerEnd }, out, H);
      },
      (err: unknown) => refuse(errorCode(err), `${this.mesh.peerId} layers [${hop.start}, ${hop.end}): ${errorMessage(err)}`),
    );
  }

  onRelease(from: string, payload: Uint8Array): void {
    let sessionId: string;
    try {
      sessionId = decodeJson(ReleaseSchema, payload, 'release').sessionId;
    } catch (err) {
      return this.hooks.warn(new AigridError('ERR_FRAME_MALFORMED', `from ${from}: ${errorMessage(err)}`));
    }
    const session = this.sessions.get(sessionId);
    if (!session) return;
    const { setup, index } = session;
    if (from !== setup.client && from !== setup.hops[index - 1]?.peerId) return;
    this.drop(session);
    const next = setup.hops[index + 1];
    if (next && next.peerId !== from) this.mesh.send(next.peerId, ServingFrame.release, payload).catch(() => {});
  }

  /** A later hop's failure report reaches the client through us when it has no link of its own. */
  onFail(from: string, payload: Uint8Array): void {
    let failure: GridFailure;
    try {
      failure = decodeJson(GridFailureSchema, payload, 'fail');
    } catch {
      return;
    }
    const session = this.sessions.get(failure.sessionId);
    if (!session || !session.setup.hops.slice(session.index + 1).some((h) => h.peerId === from)) return;
    this.mesh.send(session.setup.client, ServingFrame.fail, payload).catch(() => {});
  }

  private passOn(session: HopSession, header: PassHeader, out: Float32Array, H: number): void {
    const { setup, index } = session;
    const next = setup.hops[index + 1];
    const T = header.tokens;
    if (!next && setup.light) return this.returnLogits(session, header, out, T);
    if (!next) {
      // The result carries the route's whole layer range: the client gets hidden states after it.
      const result = encodeHidden({ ...header, layerStart: setup.hops[0]!.start, layerEnd: setup.hops.at(-1)!.end }, out, T, H);
      this.mesh.send(setup.client, ServingFrame.result, result).catch(() => this.drop(session));
      return;
    }
    const forward = encodeHidden({ ...header, hop: index + 1, layerStart: next.start, layerEnd: next.end }, out, T, H);
    this.mesh.send(next.peerId, ServingFrame.forward, forward).catch((err: unknown) =>
      this.fail(setup.client, {
        sessionId: setup.sessionId,
        requestId: header.requestId,
        code: 'ERR_PEER_CLOSED',
        message: `${this.mesh.peerId} cannot reach the next hop ${next.peerId}: ${errorMessage(err)}`,
        blame: next.peerId,
      }),
    );
  }

  /** The last hop of a light session: final norm and LM head on the last row, logits to the client. */
  private returnLogits(session: HopSession, header: PassHeader, out: Float32Array, T: number): void {
    const { setup } = session;
    const refuse = (err: unknown) =>
      this.fail(setup.client, { sessionId: setup.sessionId, requestId: header.requestId, code: errorCode(err), message: `${this.mesh.peerId} LM head: ${errorMessage(err)}` });
    const head = this.hooks.shardFor(setup.modelId)?.head;
    if (!head) return refuse(new AigridError('ERR_NO_ROUTE', `${this.mesh.peerId} no longer holds ${setup.modelId}'s LM head`));
    // Like a result, the frame names the route's whole layer range.
    const routeHeader = { ...header, layerStart: setup.hops[0]!.start, layerEnd: setup.hops.at(-1)!.end };
    head.logits(out, T).then(
      (logits) => this.mesh.send(setup.client, ServingFrame.logits, encodeLogits(routeHeader, logits)).catch(() => this.drop(session)),
      refuse,
    );
  }

  private drop(session: HopSession): void {
    if (this.sessions.get(session.setup.sessionId) !== session) return;
    this.sessions.delete(session.setup.sessionId);
    this.hooks.free(session);
  }

  private fail(to: string, refusal: Refusal): void {
    const failure: GridFailure = { ...refusal, message: refusal.message.slice(0, 1024), peerId: this.mesh.peerId };
    if (failure.blame === undefined) delete failure.blame;
    const code = isErrorCode(failure.code) ? failure.code : 'ERR_INVALID_ARGUMENT';
    this.hooks.warn(new AigridError(code, `session ${failure.sessionId}: ${failure.message}`));
    this.mesh.send(to, ServingFrame.fail, encodeJson(failure)).catch(() => {});
  }
}
