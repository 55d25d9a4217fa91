// A client's side of evidence: for the sessions it may check (drawn ones, and the replays of a
// check) it keeps the results the last hop returned with the leaves it signed, and it can ask a
// hop for an input frame that hop kept with its sender's leaf. Leaves of other sessions are
// dropped at once, so signed leaves cost a client nothing for sessions it will not check.
import type { Mesh } from '../mesh/mesh.ts';
import {
  AigridError,
  decodeControl,
  encodeControl,
  encodeKept,
  MAX_LEAF_BYTES,
  peekIds,
  ServingFrame,
  SignedLeafSchema,
  splitKept,
  type SignedLeaf,
} from '../../protocol/index.ts';
import { FrameRetention } from './retention.ts';

/** Sessions whose evidence is kept at once, at most (a check needs three). */
const MAX_KEPT_SESSIONS = 256;
/** Leaves held for results not yet arrived, at most. */
const MAX_WAITING_LEAVES = 1024;
export const EVIDENCE_WAIT_MS = 5_000;

/** A frame and the leaf its sender signed for it. */
export interface SignedFrame {
  leaf: SignedLeaf;
  payload: Uint8Array;
}

export class EvidenceKeeper {
  private readonly kept = new Set<string>();
  private readonly leaves = new Map<string, Uint8Array>();
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

  /** A leaf the last hop signed for a result that follows. */
  onLeaf(from: string, payload: Uint8Array): void {
    let leaf: SignedLeaf;
    try {
      leaf = decodeControl(SignedLeafSchema, payload, 'leaf', MAX_LEAF_BYTES);
    } catch {
      return;
    }
    if (leaf.peerId !== from || !this.kept.has(leaf.sessionId)) return;
    this.leaves.set(`${leaf.sessionId}:${leaf.requestId}`, payload);
    if (this.leaves.size > MAX_WAITING_LEAVES) this.leaves.delete(this.leaves.keys().next().value!);
  }

  /** A result from the route's last hop. */
  onResult(payload: Uint8Array): void {
    const ids = peekIds(payload);
    if (!ids || !this.kept.has(ids.sessionId)) return;
    const key = `${ids.sessionId}:${ids.requestId}`;
    const leaf = this.leaves.get(key);
    this.leaves.delete(key);
    if (leaf) this.results.keep(ids.sessionId, ids.requestId, this.mesh.peerId, encodeKept(leaf, payload));
  }

  /** A hop's answer to an ask: a frame it kept, with its sender's leaf. */
  onKept(from: string, bytes: Uint8Array): void {
    const ids = peekIds(splitKept(bytes)?.payload ?? new Uint8Array());
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
    const split = splitKept(bytes);
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
