// A client's side of evidence: for the sessions it may check (drawn ones, and the replays of a
// check) it keeps the signed results the last hop returned, and it can ask a hop for a signed
// input frame that hop kept. Results of other sessions are not kept.
import type { Mesh } from '../mesh/mesh.ts';
import {
  AigridError,
  decodeControl,
  encodeControl,
  MAX_LEAF_BYTES,
  peekIds,
  ServingFrame,
  SignedLeafSchema,
  unwrapSigned,
  type SignedLeaf,
} from '../../protocol/index.ts';
import { FrameRetention } from './retention.ts';

/** Sessions whose evidence is kept at once, at most (a check needs three). */
const MAX_KEPT_SESSIONS = 256;
export const EVIDENCE_WAIT_MS = 5_000;

/** A frame and the leaf its sender signed for it. */
export interface SignedFrame {
  leaf: SignedLeaf;
  payload: Uint8Array;
}

export class EvidenceKeeper {
  private readonly kept = new Set<string>();
  private readonly waiting = new Map<string, ((value: Uint8Array) => void)[]>();
  private readonly results = new FrameRetention();

  constructor(private readonly mesh: Mesh) {}

  /** Keeps the results of this session, with their leaves, from now on. */
  keep(sessionId: string): void {
    this.kept.add(sessionId);
    if (this.kept.size > MAX_KEPT_SESSIONS) this.forget(this.kept.values().next().value!);
  }

  forget(sessionId: string): void {
    this.kept.delete(sessionId);
  }

  /** A signed result from the route's last hop, as it came. */
  onResult(bytes: Uint8Array): void {
    const ids = peekIds(unwrapSigned(bytes)?.payload ?? new Uint8Array());
    if (ids && this.kept.has(ids.sessionId)) this.results.keep(ids.sessionId, ids.requestId, this.mesh.peerId, bytes);
  }

  /** A hop's answer to an ask: a signed frame it kept. */
  onKept(from: string, bytes: Uint8Array): void {
    const ids = peekIds(unwrapSigned(bytes)?.payload ?? new Uint8Array());
    if (ids) this.settle(`${ids.sessionId}:${ids.requestId} ${from}`, bytes);
  }

  /** The frame a request produced, with its leaf: a result kept here (from: null), or an input a hop kept. */
  async frame(sessionId: string, requestId: number, from: string | null, waitMs = EVIDENCE_WAIT_MS): Promise<SignedFrame> {
    let bytes: Uint8Array | undefined;
    if (from === null) {
      bytes = this.results.get(sessionId, requestId, this.mesh.peerId);
      if (!bytes) throw new AigridError('ERR_SESSION_EVICTED', `result ${requestId} of session ${sessionId} was not kept`);
    } else {
      const answer = this.wait(`${sessionId}:${requestId} ${from}`, waitMs, `${from} sent no kept frame ${requestId} of session ${sessionId}`);
      this.mesh.send(from, ServingFrame.ask, encodeControl({ sessionId, requestId })).catch(() => {});
      bytes = await answer;
    }
    const split = unwrapSigned(bytes);
    if (!split) throw new AigridError('ERR_FRAME_MALFORMED', `kept frame ${requestId} of session ${sessionId} is unreadable`);
    return { leaf: decodeControl(SignedLeafSchema, split.leaf, 'leaf', MAX_LEAF_BYTES), payload: split.payload };
  }

  private wait(key: string, waitMs: number, what: string): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const rest = (this.waiting.get(key) ?? []).filter((w) => w !== done);
        if (rest.length) this.waiting.set(key, rest);
        else this.waiting.delete(key);
        reject(new AigridError('ERR_PEER_TIMEOUT', `${what} in ${waitMs} ms`));
      }, waitMs);
      const done = (value: Uint8Array) => {
        clearTimeout(timer);
        resolve(value);
      };
      this.waiting.set(key, [...(this.waiting.get(key) ?? []), done]);
    });
  }

  private settle(key: string, value: Uint8Array): void {
    const waiters = this.waiting.get(key);
    this.waiting.delete(key);
    for (const w of waiters ?? []) w(value);
  }
}
