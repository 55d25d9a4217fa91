// A hop's outputs leave in the order their inputs arrived. A pipelined prefill sends a session's
// chunks back to back; if a later chunk's output overtook an earlier one (its pass shorter, or its
// sender's leaf checked sooner), the next hop would see positions that skip its cache.
import { describe, expect, it } from 'vitest';
import type { Assignment } from '../client/grid/assignment.ts';
import { HopSessions, type OutputFrame } from '../client/grid/hop-sessions.ts';
import { ephemeralIdentity, leafValid, type SessionSetup, type SignedLeaf } from '../protocol/index.ts';

const deferred = <T,>() => {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
};

describe('HopSession.sendSigned', () => {
  it('sends outputs in arrival order when a later one is ready first, and skips those with nothing to send', async () => {
    const client = ephemeralIdentity();
    const hop = ephemeralIdentity();
    const setup: SessionSetup = { sessionId: 'order-0000000001', modelId: 'm', hops: [{ peerId: hop.peerId, start: 0, end: 2 }], client: client.peerId };
    const table = new HopSessions(60_000);
    const session = table.open(setup, 0, { shard: null } as unknown as Assignment);
    const sent: { requestId: number; bytes: number[]; leaf: SignedLeaf }[] = [];
    const outputs = [1, 2, 3, 4].map(() => deferred<OutputFrame | null>());
    const done = outputs.map((o, i) =>
      session.sendSigned(hop, 'net', i + 1, Promise.resolve(new Uint8Array(32)), o.promise, async (leaf, frame) => {
        sent.push({ requestId: leaf.requestId, bytes: [...frame.bytes], leaf });
      }),
    );
    // Ready in reverse; the third has nothing to send (its input was refused on the way).
    outputs[3]!.resolve({ type: 34, bytes: Uint8Array.of(4) });
    outputs[2]!.resolve(null);
    outputs[1]!.resolve({ type: 34, bytes: Uint8Array.of(2) });
    await new Promise((r) => setTimeout(r, 20));
    expect(sent).toEqual([]); // the first is not ready: nothing overtakes it
    outputs[0]!.resolve({ type: 34, bytes: Uint8Array.of(1) });
    await Promise.all(done);
    expect(sent.map((s) => [s.requestId, s.bytes[0]])).toEqual([[1, 1], [2, 2], [4, 4]]);
    for (const s of sent) expect(await leafValid(s.leaf)).toBe(true);
    table.close();
  });
});
