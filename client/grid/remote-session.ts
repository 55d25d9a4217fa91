// One session on one route, seen from the client: set it up on every hop (each echoes the setup
// once it is linked to its next hop), send hidden states to hop 0 in chunks without waiting, and
// collect the results from the last hop. The first failure of any kind fails the whole session;
// the runner then starts a new one elsewhere. The route's roles say what travels: token ids into
// a first stage that embeds, logits out of a last stage that runs the head, else hidden states.
import type { Mesh } from '../mesh/mesh.ts';
import {
  AigridError,
  encodeControl,
  encodeHidden,
  encodeTokenIds,
  randomSessionId,
  sameSetup,
  ServingFrame,
  type ErrorCode,
  type RouteTicket,
  type HiddenFrame,
  type PassHeader,
  type SessionFailure,
  type SessionSetup,
  type Stage,
} from '../../protocol/index.ts';

/** A session's inputs: hidden rows, or token ids for a route whose first stage embeds. */
export type SessionRows = Float32Array | Uint32Array;

/** Why a route failed, and the peer held at fault (none: the route may be tried again). */
export class RouteFailure extends AigridError {
  constructor(code: ErrorCode, message: string, readonly blame?: string) {
    super(code, message);
  }
}

interface Pending {
  startPos: number;
  tokens: number;
  resolve: (values: Float32Array) => void;
}

export interface RemoteSessionOptions {
  mesh: Mesh;
  modelId: string;
  hops: Stage[];
  /** The coordinator's ticket for the route, which the hops it assigned require. */
  ticket?: RouteTicket;
  hiddenSize: number;
  /** Logits per result, when the last stage runs the head. */
  vocabSize?: number;
  /** Longest wait for any progress (an acknowledgement or a result) while one is expected. */
  timeoutMs: number;
}

export class RemoteSession {
  readonly id = randomSessionId();
  readonly setup: SessionSetup;
  /** Rows of the session's history that the hops hold in their caches. */
  synced = 0;
  private readonly mesh: Mesh;
  private readonly pending = new Map<number, Pending>();
  private readonly acks = new Map<string, () => void>();
  private nextRequest = 1;
  private failure: RouteFailure | null = null;
  private onFailure: (failure: RouteFailure) => void = () => {};
  /** Rejects with the session's first failure. */
  private readonly failed: Promise<never>;
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  /** Lets go of the links to the hops (held while the session lives). */
  private readonly unhold: (() => void)[];

  constructor(private readonly options: RemoteSessionOptions) {
    this.mesh = options.mesh;
    this.setup = { sessionId: this.id, modelId: options.modelId, hops: options.hops.map((h) => ({ ...h })), client: options.mesh.peerId, ...(options.ticket ? { ticket: options.ticket } : {}) };
    if (this.setup.hops.at(-1)!.head && !options.vocabSize) throw new AigridError('ERR_INVALID_ARGUMENT', 'a route whose last stage runs the head needs the vocabulary size');
    this.failed = new Promise<never>((_, reject) => (this.onFailure = reject));
    this.failed.catch(() => {});
    this.unhold = this.setup.hops.map((h) => this.mesh.hold(h.peerId));
  }

  get hops(): readonly Stage[] {
    return this.setup.hops;
  }

  /** The id of the last request sent (request ids count up from 1 in every session). */
  get lastRequest(): number {
    return this.nextRequest - 1;
  }

  get alive(): boolean {
    return this.failure === null;
  }

  includes(peerId: string): boolean {
    return this.setup.hops.some((h) => h.peerId === peerId);
  }

  /** Sends the setup to every hop and waits until each has acknowledged it. */
  async open(): Promise<void> {
    if (this.failure) throw this.failure;
    const payload = encodeControl(this.setup);
    const acked = this.setup.hops.map((hop) => new Promise<void>((resolve) => this.acks.set(hop.peerId, resolve)));
    for (const hop of this.setup.hops) {
      this.mesh.send(hop.peerId, ServingFrame.session, payload).catch((err: unknown) =>
        this.fail(new RouteFailure('ERR_PEER_CLOSED', `cannot reach ${hop.peerId}: ${(err as Error).message}`, hop.peerId)),
      );
    }
    this.arm();
    await Promise.race([Promise.all(acked), this.failed]);
  }

  /**
   * Runs rows [T, H] (or T token ids) at positions startPos.. through the route; sends chunks of
   * `chunkTokens` back to back. Answers the hidden rows [T, H], or the logits after the last token.
   */
  async run(rows: SessionRows, startPos: number, chunkTokens: number): Promise<Float32Array> {
    if (this.failure) throw this.failure;
    const H = rows instanceof Uint32Array ? 1 : this.options.hiddenSize;
    const T = rows.length / H;
    const first = this.setup.hops[0]!;
    const parts: Promise<Float32Array>[] = [];
    for (let t = 0; t < T && this.alive; t += chunkTokens) {
      const n = Math.min(chunkTokens, T - t);
      const requestId = this.nextRequest++;
      const header = { sessionId: this.id, requestId, startPos: startPos + t, hop: 0, layerStart: first.start, layerEnd: first.end };
      parts.push(new Promise<Float32Array>((resolve) => this.pending.set(requestId, { startPos: startPos + t, tokens: n, resolve })));
      const chunk = rows.subarray(t * H, (t + n) * H);
      const sent = chunk instanceof Uint32Array
        ? this.mesh.send(first.peerId, ServingFrame.tokens, encodeTokenIds(header, chunk))
        : this.mesh.send(first.peerId, ServingFrame.forward, encodeHidden(header, chunk, n, H));
      sent.catch((err: unknown) =>
        this.fail(new RouteFailure('ERR_PEER_CLOSED', `cannot reach ${first.peerId}: ${(err as Error).message}`, first.peerId)),
      );
    }
    this.arm();
    const outs = await Promise.race([Promise.all(parts), this.failed]);
    // Each chunk's logits are of its own last token; only the last chunk's follow the whole input.
    if (this.setup.hops.at(-1)!.head) return outs.at(-1)!;
    const out = new Float32Array(rows.length);
    let offset = 0;
    for (const part of outs) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  onAck(from: string, setup: SessionSetup): void {
    if (!sameSetup(setup, this.setup)) return;
    this.acks.get(from)?.();
    this.acks.delete(from);
    this.arm();
  }

  onResult(from: string, frame: HiddenFrame): void {
    if (this.setup.hops.at(-1)!.head) return;
    const last = this.setup.hops.at(-1)!;
    const { header, values } = frame;
    const waiting = this.pending.get(header.requestId);
    if (from !== last.peerId || !waiting) return;
    if (header.tokens !== waiting.tokens || header.startPos !== waiting.startPos || header.hidden !== this.options.hiddenSize) {
      const got = `[${header.tokens}, ${header.hidden}] at ${header.startPos}`;
      this.fail(new RouteFailure('ERR_SHAPE_MISMATCH', `result ${header.requestId} from ${from} is ${got}, expected [${waiting.tokens}, ${this.options.hiddenSize}] at ${waiting.startPos}`, from));
      return;
    }
    this.pending.delete(header.requestId);
    waiting.resolve(values);
    this.arm();
  }

  onLogits(from: string, header: PassHeader, logits: Float32Array): void {
    const V = this.setup.hops.at(-1)!.head ? this.options.vocabSize : undefined;
    const waiting = this.pending.get(header.requestId);
    if (V === undefined || from !== this.setup.hops.at(-1)!.peerId || !waiting) return;
    if (header.tokens !== waiting.tokens || header.startPos !== waiting.startPos || logits.length !== V) {
      const got = `${logits.length} logits after ${header.tokens} tokens at ${header.startPos}`;
      return this.fail(new RouteFailure('ERR_SHAPE_MISMATCH', `result ${header.requestId} from ${from} is ${got}, expected ${V} after ${waiting.tokens} at ${waiting.startPos}`, from));
    }
    if (!logits.every(Number.isFinite)) return this.fail(new RouteFailure('ERR_INVALID_ARGUMENT', `result ${header.requestId} from ${from} holds non-finite logits`, from));
    this.pending.delete(header.requestId);
    waiting.resolve(logits);
    this.arm();
  }

  onFail(from: string, failure: SessionFailure): void {
    if (!this.includes(from)) return;
    // An evicted or forgotten session is nobody's fault: a new session on the same route will do.
    const blame = failure.code === 'ERR_SESSION_EVICTED' ? undefined : this.blameOf(from, failure);
    this.fail(new RouteFailure(failure.code, `${failure.peerId}: ${failure.message}`, blame));
  }

  /**
   * Who a failure report may hold at fault: its reporter (the hop that sent it, or a later hop it
   * relays for), the hop before the reporter (which sent it a bad frame; the client, for hop 0) or
   * the hop after it (which it cannot reach). Blame of anyone else falls on the reporter, so a hop
   * cannot get an arbitrary peer excluded from routes.
   */
  private blameOf(from: string, failure: SessionFailure): string {
    const ids = this.setup.hops.map((h) => h.peerId);
    const sender = ids.indexOf(from);
    const named = ids.indexOf(failure.peerId);
    const reporter = named >= sender ? named : sender;
    const claimed = failure.blame ?? ids[reporter]!;
    const before = reporter === 0 ? this.setup.client : ids[reporter - 1];
    return claimed === ids[reporter] || claimed === before || claimed === ids[reporter + 1] ? claimed : ids[reporter]!;
  }

  fail(failure: RouteFailure): void {
    if (this.failure) return;
    this.failure = failure;
    for (const let_go of this.unhold) let_go();
    clearTimeout(this.watchdog);
    this.onFailure(failure);
  }

  /** Tells the hops (except the given ones) to free the session's caches. */
  release(skip: ReadonlySet<string> = new Set()): void {
    const payload = encodeControl({ sessionId: this.id });
    for (const hop of this.setup.hops) {
      if (!skip.has(hop.peerId)) this.mesh.send(hop.peerId, ServingFrame.release, payload).catch(() => {});
    }
    this.fail(new RouteFailure('ERR_PEER_CLOSED', `session ${this.id} was released`));
  }

  /** (Re)starts the progress timer while anything is awaited; on expiry a silent hop is blamed. */
  private arm(): void {
    clearTimeout(this.watchdog);
    if (this.failure || (this.pending.size === 0 && this.acks.size === 0)) return;
    this.watchdog = setTimeout(() => void this.timedOut(), this.options.timeoutMs);
  }

  private async timedOut(): Promise<void> {
    const unacked = [...this.acks.keys()];
    const blame = unacked[0] ?? (await this.silentHop());
    const what = unacked.length ? `no acknowledgement from ${unacked.join(', ')}` : `no result for ${this.pending.size} request(s)`;
    this.fail(new RouteFailure('ERR_PEER_TIMEOUT', `session ${this.id}: ${what} in ${this.options.timeoutMs} ms`, blame));
  }

  /** The first hop that does not answer a ping; undefined when all do (then nobody is blamed). */
  private async silentHop(): Promise<string | undefined> {
    for (const hop of this.setup.hops) {
      const link = this.mesh.link(hop.peerId);
      if (!link?.open) return hop.peerId;
      const answered = await Promise.race([
        link.ping().then(() => true, () => false),
        new Promise<boolean>((r) => setTimeout(() => r(false), 1000)),
      ]);
      if (!answered) return hop.peerId;
    }
    return undefined;
  }
}
