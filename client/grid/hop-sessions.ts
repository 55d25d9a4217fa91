// The sessions a serving peer takes part in. A HopSession owns what the session holds here: its
// place on the route, the assignment (model and layers) it runs on, and the KV caches it fills;
// `release()` is the one way it ends (release, client gone, idle sweep, eviction, unassignment, a
// send that failed). `run()` is the stage's one pipeline: embed? -> layers -> head?.
import { passEnds, type DecodeBatcher, type StepEnds, type StepInput } from './decode-batcher.ts';
import type { Assignment } from './assignment.ts';
import { AigridError, contentRoot, signLeaf, type Identity, type SessionSetup, type SignedLeaf, type Stage } from '../../protocol/index.ts';

/** What enters a stage: token ids when it embeds, hidden states [T, H] otherwise. */
export type StageInput = { ids: Uint32Array } | { hidden: Float32Array };
/** What leaves it: the last token's logits [V] when it runs the head, hidden states [T, H] otherwise. */
export type StageOutput = { logits: Float32Array } | { hidden: Float32Array };
/** An encoded output and the serving frame type it goes out as. */
export interface OutputFrame {
  type: number;
  bytes: Uint8Array;
}

export class HopSession {
  lastUsed = Date.now();
  /** The pass before this one, so an embedding stage starts its passes in arrival order. */
  private previous: Promise<unknown> = Promise.resolve();
  /** Lets go of the links this session needs (its client, the hops beside it). */
  private unhold: (() => void)[] = [];
  /** The last output sent on: the next waits for it, so outputs leave in the order they were made. */
  private sending: Promise<unknown> = Promise.resolve();

  constructor(
    readonly setup: SessionSetup,
    /** This peer's hop index on the route. */
    readonly index: number,
    readonly assignment: Assignment,
    private readonly table: HopSessions,
  ) {}

  get id(): string {
    return this.setup.sessionId;
  }

  get stage(): Stage {
    return this.setup.hops[this.index]!;
  }

  /** The next stage, or undefined when results go back to the client. */
  get next(): Stage | undefined {
    return this.setup.hops[this.index + 1];
  }

  /** Who may send this stage its inputs: the previous hop, or the client for hop 0. */
  get sender(): string {
    return this.index === 0 ? this.setup.client : this.setup.hops[this.index - 1]!.peerId;
  }

  touch(): void {
    this.lastUsed = Date.now();
  }

  /** Keeps the links this session runs over from being closed as idle while it lives. */
  holdLinks(hold: (peerId: string) => () => void): void {
    const peers = new Set([this.setup.client, this.sender, this.next?.peerId].filter((p): p is string => p !== undefined));
    this.unhold = [...peers].map(hold);
  }

  /**
   * Sends one input's output on, after its signed leaf (what this stage was given, `input`, a
   * content digest, and what it answers). Called when the input arrives, so outputs leave in the
   * order their inputs came even when a later one is ready first (a shorter pass, or its sender's
   * leaf checked sooner); `output` resolves to null when nothing is to be sent.
   */
  sendSigned(identity: Identity, network: string, requestId: number, input: Promise<Uint8Array>, output: Promise<OutputFrame | null>, send: (leaf: SignedLeaf, frame: OutputFrame) => Promise<void>): Promise<void> {
    const { modelId, sessionId, client } = this.setup;
    const { start, end } = this.stage;
    const leaf = Promise.all([input, output]).then(async ([i, o]) => o && signLeaf(identity, { network, modelId, sessionId, client, start, end, requestId }, i, await contentRoot(o.bytes)));
    const sent = Promise.all([leaf, output, this.sending]).then(([l, o]) => (l && o ? send(l, o) : undefined));
    this.sending = sent.catch(() => {});
    return sent;
  }

  /** Ends the session here: it leaves the table and its KV caches are freed. Safe to call twice. */
  release(): void {
    if (!this.table.remove(this)) return;
    for (const let_go of this.unhold.splice(0)) let_go();
    this.assignment.shard?.release(this.id);
  }

  /**
   * One pass of T tokens at startPos through this stage. The layer pass starts before this returns
   * (so passes keep arrival order), unless the embedding runs apart: then passes are chained.
   * Decode steps (T = 1) go through the batcher. Tokens are counted here, when the layers ran.
   */
  run(input: StageInput, startPos: number, T: number, batcher: DecodeBatcher): Promise<StageOutput> {
    const { shard, head } = this.assignment;
    if (!shard) return Promise.reject(new AigridError('ERR_NO_ROUTE', `${this.assignment.modelId} is no longer served here`));
    if ('ids' in input && !head) return Promise.reject(new AigridError('ERR_NO_ROUTE', `${this.assignment.modelId}'s embedding is no longer held here`));
    if (this.stage.head && !head) return Promise.reject(new AigridError('ERR_NO_ROUTE', `${this.assignment.modelId}'s LM head is no longer held here`));
    const { start, end } = this.stage;
    const pass = this.assignment.loadWindow.begin();
    const positions = Uint32Array.from({ length: T }, (_, i) => startPos + i);
    const stages = this.setup.hops.length + 1; // the hops and the client
    // The embedding and head run in the layers' pass where they share its backend: the hidden
    // states between them never leave the device (one submit and one read-back per step).
    const ends: StepEnds | undefined = head && head.backend === shard.backend ? { head, embed: 'ids' in input && head.embedsOnDevice, logits: Boolean(this.stage.head) } : undefined;
    const layers = (layerInput: StepInput): Promise<Float32Array> => {
      if (T === 1) return batcher.step(shard, { start, end }, layerInput, startPos, this.id, stages, ends);
      try {
        const hidden = 'hidden' in layerInput ? layerInput.hidden : null;
        if (!ends) return shard.forward(hidden, positions, this.id, { start, end });
        const { parts, finish } = passEnds(ends, 'ids' in layerInput ? layerInput.ids : null, positions, T, false);
        return shard.forward(hidden, positions, this.id, { start, end }, parts).then(finish);
      } catch (err) {
        return Promise.reject(err);
      }
    };
    let result: Promise<Float32Array>;
    if ('ids' in input && !ends?.embed) {
      // Embedded apart (another backend, or Gemma's scale on the CPU): only the embedding is
      // chained, so each pass's layers start as soon as its rows exist, in arrival order.
      const embedded = this.previous.then(() => head!.embed(input.ids, positions));
      this.previous = embedded.catch(() => {});
      result = embedded.then((hidden) => layers({ hidden }));
    } else {
      result = layers(input);
    }
    const output = result.then(async (out): Promise<StageOutput> => {
      this.assignment.tokensServed += T;
      if (!this.stage.head) return { hidden: out };
      if (ends?.logits) return { logits: out };
      if (!head) throw new AigridError('ERR_NO_ROUTE', `${this.assignment.modelId}'s LM head is no longer held here`);
      return { logits: await head.logits(out, T) };
    });
    // Timed from arrival, so a decode step's wait in the batcher counts as this hop's latency.
    output.then(
      () => pass.end(T, startPos === 0),
      () => pass.end(),
    );
    return output;
  }
}

export class HopSessions {
  private readonly sessions = new Map<string, HopSession>();
  private readonly sweeper: ReturnType<typeof setInterval>;

  /** Sessions idle for `idleMs` are dropped. */
  constructor(private readonly idleMs: number) {
    this.sweeper = setInterval(() => this.sweep(), Math.max(100, Math.min(idleMs / 2, 30_000)));
    // The sweep alone must not keep a Node process alive.
    (this.sweeper as { unref?: () => void }).unref?.();
  }

  get size(): number {
    return this.sessions.size;
  }

  get(sessionId: string): HopSession | undefined {
    return this.sessions.get(sessionId);
  }

  open(setup: SessionSetup, index: number, assignment: Assignment): HopSession {
    const session = new HopSession(setup, index, assignment, this);
    this.sessions.get(setup.sessionId)?.release();
    this.sessions.set(setup.sessionId, session);
    return session;
  }

  /** Takes a session out of the table (HopSession.release calls it); false when it was not in it. */
  remove(session: HopSession): boolean {
    if (this.sessions.get(session.id) !== session) return false;
    this.sessions.delete(session.id);
    return true;
  }

  /** Sessions matching a test (e.g. of one model, or of one client). */
  filter(test: (session: HopSession) => boolean): HopSession[] {
    return [...this.sessions.values()].filter(test);
  }

  count(test: (session: HopSession) => boolean): number {
    let n = 0;
    for (const s of this.sessions.values()) if (test(s)) n++;
    return n;
  }

  sweep(now = Date.now()): void {
    for (const session of [...this.sessions.values()]) if (now - session.lastUsed >= this.idleMs) session.release();
  }

  /** Drops every session and stops the sweep. */
  close(): void {
    clearInterval(this.sweeper);
    for (const session of [...this.sessions.values()]) session.release();
  }
}
