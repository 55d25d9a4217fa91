// A serving peer's answers to serving frames (protocol/session.ts). `session`: check the route and
// this peer's stage on it, link to the next hop, acknowledge by echoing the setup to the client.
// `forward` / `tokens`: check, run the stage (embed? -> layers -> head?), pass the output on to the
// next hop or back to the client. `release`: drop and pass on. `fail` from a later hop: relay to
// the client. Refusals go out as `fail` frames naming the peer held at fault.
import type { Mesh } from '../mesh/mesh.ts';
import {
  AigridError,
  checkRoute,
  contentRoot,
  FrameAskSchema,
  leafValid,
  MAX_LEAF_BYTES,
  SignedLeafSchema,
  decodeControl,
  decodeHidden,
  decodeTokenIds,
  encodeControl,
  encodeHidden,
  encodeLogits,
  errorCode,
  errorMessage,
  peekIds,
  ReleaseSchema,
  sameSetup,
  ServingFrame,
  SessionFailureSchema,
  SessionSetupSchema,
  type ErrorCode,
  type PassHeader,
  type SessionFailure,
  type SessionSetup,
  type SignedLeaf,
  ticketValid,
  toBase64Url,
  unwrapSigned,
  wrapSigned,
} from '../../protocol/index.ts';
import type { Assignment } from './assignment.ts';
import { DecodeBatcher } from './decode-batcher.ts';
import type { HopSession, HopSessions, OutputFrame, StageInput, StageOutput } from './hop-sessions.ts';
import { FrameRetention } from './retention.ts';

export interface HopServerHooks {
  /** What this peer serves of a model now. */
  assignmentOf(modelId: string): Assignment | undefined;
  warn(error: AigridError): void;
  /** A session's stage ran `tokens` tokens and their output goes on (counted for credits). */
  ran?(session: HopSession, tokens: number): void;
}

/** How many sessions a peer keeps: per client, and in all (each holds a route, a table entry and KV). */
export interface SessionLimits {
  perClient: number;
  total: number;
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = { perClient: 64, total: 1024 };



type Refusal = Omit<SessionFailure, 'peerId'>;
type Refuse = (code: ErrorCode, message: string, blame?: string) => void;

export class HopServer {
  /** Decode steps of different sessions run together (continuous batching). */
  readonly batcher = new DecodeBatcher();
  /** Input frames kept for a while: the previous hop's signed outputs, evidence for the client. */
  readonly retention = new FrameRetention();

  constructor(
    private readonly mesh: Mesh,
    private readonly sessions: HopSessions,
    private readonly hooks: HopServerHooks,
    private readonly limits: SessionLimits = DEFAULT_SESSION_LIMITS,
  ) {}

  async onSetup(from: string, payload: Uint8Array): Promise<void> {
    let setup;
    try {
      setup = decodeControl(SessionSetupSchema, payload, 'session');
    } catch (err) {
      return this.hooks.warn(new AigridError('ERR_FRAME_MALFORMED', `from ${from}: ${errorMessage(err)}`));
    }
    const me = this.mesh.peerId;
    if (setup.client === me) return; // the ack of a session of our own as a client
    const { sessionId, modelId, hops } = setup;
    const refuse: Refuse = (code, message, blame) => this.fail(from, { sessionId, requestId: 0, code, message, blame });
    if (setup.client !== from) return refuse('ERR_INVALID_ARGUMENT', `session ${sessionId} names ${setup.client} as its client but came from ${from}`);
    try {
      checkRoute(hops);
    } catch (err) {
      return refuse(errorCode(err), errorMessage(err));
    }
    const index = hops.findIndex((h) => h.peerId === me);
    const stage = hops[index];
    if (!stage) return refuse('ERR_INVALID_ARGUMENT', `${me} is not on the route of session ${sessionId}`);
    const assignment = this.hooks.assignmentOf(modelId);
    if (!assignment?.shard) return refuse('ERR_NO_ROUTE', `${me} does not serve ${modelId} now (${assignment?.state ?? 'not assigned'})`);
    if (!assignment.covers(stage.start, stage.end)) {
      return refuse('ERR_INVALID_ARGUMENT', `${me} serves ${modelId} layers [${assignment.start}, ${assignment.end}), which do not hold [${stage.start}, ${stage.end})`);
    }
    if (assignment.ticketed && !(await this.ticketHolds(setup))) {
      return refuse('ERR_PERMISSION_DENIED', `session ${sessionId} has no valid route ticket from the coordinator that assigned ${me} its layers (a route must come from the coordinator, for this client)`);
    }
    const lacks = stage.embed && !assignment.parts.embed ? 'embedding' : stage.head && !assignment.parts.head ? 'LM head' : null;
    if (lacks) return refuse('ERR_NO_ROUTE', `${me} does not hold ${modelId}'s ${lacks}, so it cannot be hop ${index} of this route`);
    const existing = this.sessions.get(sessionId);
    if (existing && !sameSetup(existing.setup, setup)) {
      return refuse('ERR_INVALID_ARGUMENT', `session ${sessionId} already exists here with another route`);
    }
    if (!existing) {
      const mine = this.sessions.count((s) => s.setup.client === from);
      if (mine >= this.limits.perClient || this.sessions.size >= this.limits.total) {
        const which = mine >= this.limits.perClient ? `${from} has ${mine} sessions here, the most one client may` : `${me} holds ${this.sessions.size} sessions, the most it takes`;
        return refuse('ERR_TOO_MANY_SESSIONS', `session ${sessionId}: ${which}`);
      }
    }
    let session = existing;
    if (!session) {
      session = this.sessions.open(setup, index, assignment);
      session.holdLinks((peerId) => this.mesh.hold(peerId));
    }
    const next = hops[index + 1];
    if (next) {
      // Linking now means the first forward does not wait for ICE, and a dead next hop is named
      // before any token is sent.
      try {
        await this.mesh.connect(next.peerId);
      } catch (err) {
        session.release();
        return refuse(errorCode(err), `${me} cannot reach the next hop ${next.peerId}: ${errorMessage(err)}`, next.peerId);
      }
    }
    if (this.sessions.get(sessionId) !== session) return;
    this.mesh.send(from, ServingFrame.session, payload).catch(() => session.release());
  }

  /**
   * A `forward` (hidden states) or `tokens` (ids) frame: checked, then run through the session's
   * stage. Everything before the stage's layer pass is synchronous, so passes keep arrival order.
   */
  onInput(from: string, type: typeof ServingFrame.forward | typeof ServingFrame.tokens, payload: Uint8Array, signed?: { leaf: SignedLeaf; bytes: Uint8Array }): void {
    const ids = peekIds(payload);
    const session = ids ? this.sessions.get(ids.sessionId) : undefined;
    const sessionId = ids?.sessionId ?? '0000000000000000';
    const requestId = ids?.requestId ?? 0;
    // About a known session, refusals go to its client; otherwise to the sender.
    const refuse: Refuse = (code, message, blame) => this.fail(session?.setup.client ?? from, { sessionId, requestId, code, message, blame });

    let header: PassHeader & { hidden: number };
    let input: StageInput;
    try {
      if (type === ServingFrame.tokens) {
        const frame = decodeTokenIds(payload);
        [header, input] = [{ ...frame.header, hidden: 1 }, { ids: frame.ids }];
      } else {
        const frame = decodeHidden(payload);
        [header, input] = [frame.header, { hidden: frame.values }];
      }
    } catch (err) {
      return refuse(errorCode(err), `${this.mesh.peerId} refused a frame from ${from}: ${errorMessage(err)}`, from);
    }
    if (!session) {
      return this.fail(from, { sessionId, requestId, code: 'ERR_SESSION_EVICTED', message: `session ${sessionId} is unknown at ${this.mesh.peerId} (released or never set up); start a new session and replay` });
    }
    const { stage, index } = session;
    if (from !== session.sender) {
      return this.fail(from, { sessionId, requestId, code: 'ERR_INVALID_ARGUMENT', message: `inputs of session ${sessionId} at hop ${index} come from ${session.sender}, not ${from}` });
    }
    if ('ids' in input !== Boolean(stage.embed)) {
      const takes = stage.embed ? 'token ids' : 'hidden states';
      return refuse('ERR_INVALID_ARGUMENT', `hop ${index} of session ${sessionId} takes ${takes}`, from);
    }
    const H = 'ids' in input ? 1 : session.assignment.model.hiddenSize;
    if (header.hop !== index || header.layerStart !== stage.start || header.layerEnd !== stage.end || header.hidden !== H) {
      return refuse('ERR_SHAPE_MISMATCH', `frame for hop ${header.hop} [${header.layerStart}, ${header.layerEnd}) width ${header.hidden} reached hop ${index} [${stage.start}, ${stage.end}) width ${H}`, from);
    }
    const digest = contentRoot(payload);
    // The leaf is checked while the layers run; the output leaves only once it holds.
    let verified = Promise.resolve(true);
    if (index > 0) {
      // From a hop: the frame must carry its sender's signed leaf, and is kept as it came.
      if (!signed) return refuse('ERR_INVALID_ARGUMENT', `frame ${header.requestId} of session ${sessionId} came without ${from}'s signed leaf`, from);
      this.retention.keep(session.id, header.requestId, session.setup.client, signed.bytes);
      verified = this.leafHolds(session, signed.leaf, digest).then((holds) => {
        if (holds) return true;
        refuse('ERR_INVALID_ARGUMENT', `${from}'s signed leaf for frame ${header.requestId} of session ${sessionId} does not match the frame or is not signed by its key`, from);
        session.release(); // its cache now holds input nobody vouches for
        return false;
      });
    }
    session.touch();
    const { hidden: _w, ...pass } = header;
    const output = Promise.all([session.run(input, header.startPos, header.tokens, this.batcher), verified]).then(
      ([out, holds]) => {
        if (holds) this.hooks.ran?.(session, header.tokens);
        return holds ? out : null;
      },
      (err: unknown) => {
        refuse(errorCode(err), `${this.mesh.peerId} hop ${index} [${stage.start}, ${stage.end}): ${errorMessage(err)}`);
        // An evicted session has nothing left here; the client replays on a new one.
        if (errorCode(err) === 'ERR_SESSION_EVICTED') session.release();
        return null;
      },
    );
    // Passed on now, while frames are in arrival order; sent once ready, in that order.
    this.passOn(session, pass, output, digest);
  }

  onRelease(from: string, payload: Uint8Array): void {
    let sessionId: string;
    try {
      sessionId = decodeControl(ReleaseSchema, payload, 'release').sessionId;
    } catch (err) {
      return this.hooks.warn(new AigridError('ERR_FRAME_MALFORMED', `from ${from}: ${errorMessage(err)}`));
    }
    const session = this.sessions.get(sessionId);
    if (!session || (from !== session.setup.client && from !== session.sender)) return;
    session.release();
    const next = session.next;
    if (next && next.peerId !== from) this.mesh.send(next.peerId, ServingFrame.release, payload).catch(() => {});
  }

  /** A `forward` frame with the previous hop's signed leaf. */
  onSigned(from: string, bytes: Uint8Array): void {
    const signed = unwrapSigned(bytes);
    if (!signed || signed.type !== ServingFrame.forward) return;
    let leaf: SignedLeaf;
    try {
      leaf = decodeControl(SignedLeafSchema, signed.leaf, 'leaf', MAX_LEAF_BYTES);
    } catch {
      return this.onInput(from, ServingFrame.forward, signed.payload); // refused there: no valid leaf
    }
    this.onInput(from, ServingFrame.forward, signed.payload, { leaf, bytes });
  }

  /** Whether a leaf is the previous hop's signature of this frame, in this session, for its layers. */
  private async leafHolds(session: HopSession, leaf: SignedLeaf, content: Promise<Uint8Array>): Promise<boolean> {
    const { setup } = session;
    const before = setup.hops[session.index - 1]!;
    const fits = leaf.network === this.mesh.network && leaf.modelId === setup.modelId && leaf.client === setup.client && leaf.start === before.start && leaf.end === before.end;
    return fits && leaf.output === toBase64Url(await content) && (await leafValid(leaf));
  }

  /** A client asks for an input frame kept from one of its sessions; it gets the frame, or nothing. */
  onAsk(from: string, payload: Uint8Array): void {
    let ask;
    try {
      ask = decodeControl(FrameAskSchema, payload, 'ask');
    } catch {
      return;
    }
    const frame = this.retention.get(ask.sessionId, ask.requestId, from);
    if (frame) this.mesh.send(from, ServingFrame.kept, frame).catch(() => {});
  }

  /** Whether the setup carries the coordinator's valid, unexpired ticket for exactly this route and client. */
  private async ticketHolds(setup: SessionSetup): Promise<boolean> {
    const key = this.mesh.signaling.serverKey;
    if (!setup.ticket || !key) return false;
    const hops = setup.hops.map(({ peerId, start, end }) => ({ peerId, start, end }));
    return ticketValid(key, setup.ticket, { network: this.mesh.network, modelId: setup.modelId, client: setup.client, hops });
  }

  /** A later hop's failure report reaches the client through us when it has no link of its own. */
  onFail(from: string, payload: Uint8Array): void {
    let failure: SessionFailure;
    try {
      failure = decodeControl(SessionFailureSchema, payload, 'fail');
    } catch {
      return;
    }
    const session = this.sessions.get(failure.sessionId);
    if (!session || !session.setup.hops.slice(session.index + 1).some((h) => h.peerId === from)) return;
    this.mesh.send(session.setup.client, ServingFrame.fail, payload).catch(() => {});
  }

  /** Sends a stage's output on: to the next hop, or to the client (naming the route's whole layer range). */
  private passOn(session: HopSession, header: PassHeader, output: Promise<StageOutput | null>, input: Promise<Uint8Array>): void {
    const { setup } = session;
    const next = session.next;
    const T = header.tokens;
    if (!next) {
      const routeHeader = { ...header, layerStart: setup.hops[0]!.start, layerEnd: setup.hops.at(-1)!.end };
      const frame = output.then((out): OutputFrame | null => {
        if (!out) return null;
        if ('logits' in out) return { type: ServingFrame.logits, bytes: encodeLogits(routeHeader, out.logits) };
        return { type: ServingFrame.result, bytes: encodeHidden(routeHeader, out.hidden, T, out.hidden.length / T) };
      });
      const sent = session.sendSigned(this.mesh.identity, this.mesh.network, header.requestId, input, frame, (leaf, f) =>
        this.mesh.send(setup.client, ServingFrame.signed, wrapSigned(f.type, encodeControl(leaf), f.bytes)),
      );
      sent.catch(() => session.release());
      return;
    }
    const nextHeader = { ...header, hop: session.index + 1, layerStart: next.start, layerEnd: next.end };
    const frame = output.then((out): OutputFrame | null => {
      if (!out) return null;
      const hidden = (out as { hidden: Float32Array }).hidden; // only the last stage runs the head
      return { type: ServingFrame.forward, bytes: encodeHidden(nextHeader, hidden, T, hidden.length / T) };
    });
    const sent = session.sendSigned(this.mesh.identity, this.mesh.network, header.requestId, input, frame, (leaf, f) =>
      this.mesh.send(next.peerId, ServingFrame.signed, wrapSigned(f.type, encodeControl(leaf), f.bytes)),
    );
    sent.catch((err: unknown) =>
      this.fail(setup.client, {
        sessionId: setup.sessionId,
        requestId: header.requestId,
        code: 'ERR_PEER_CLOSED',
        message: `${this.mesh.peerId} cannot reach the next hop ${next.peerId}: ${errorMessage(err)}`,
        blame: next.peerId,
      }),
    );
  }

  private fail(to: string, refusal: Refusal): void {
    const failure: SessionFailure = { ...refusal, message: refusal.message.slice(0, 1024), peerId: this.mesh.peerId };
    if (failure.blame === undefined) delete failure.blame;
    this.hooks.warn(new AigridError(failure.code, `session ${failure.sessionId}: ${failure.message}`));
    this.mesh.send(to, ServingFrame.fail, encodeControl(failure)).catch(() => {});
  }
}
