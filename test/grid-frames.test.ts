// A serving peer's answers to raw frames: every bad setup or activation (malformed, wrong shape,
// wrong hop, NaN, unknown session, positions that skip) is answered with a `fail` frame carrying
// its ERR_* code; a good frame then still gets its result, equal to a local shard's output on the
// same f16 input.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GridPeer } from '../client/grid/index.ts';
import type { Mesh } from '../client/mesh/index.ts';
import { Shard } from '../client/model/shard.ts';
import { contentRoot, decodeActivation, encodeControl, signLeaf, wrapSigned, encodeActivation, encodeHidden, leafValid, randomSessionId, ServingFrame, toBase64Url, unwrapSigned, wireRound, type Frame, type SessionFailure, type SessionSetup, type SignedLeaf } from '../protocol/index.ts';
import { route, startGridNet, type GridNet } from './helpers/grid-net.ts';
import { openFixture } from './helpers/model-runtime.ts';
import { waitFor } from './helpers/wait.ts';

let net: GridNet;
let peer: GridPeer;
let raw: Mesh;
const inbox: Frame[] = [];
const H = 64;

beforeAll(async () => {
  net = await startGridNet();
  peer = await net.peer('frames', 'frames-a');
  await peer.assign(await net.spec('tiny-llama'), 0, 2);
  raw = await net.join('frames', 'frames-client');
  raw.on('frame', (_from, f) => inbox.push(f));
});
afterAll(async () => {
  await net?.close();
});

/** The next frame of `type` from the peer. */
async function next(type: number): Promise<Frame> {
  await waitFor(() => inbox.some((f) => f.type === type), 5000, `frame type ${type}`);
  return inbox.splice(inbox.findIndex((f) => f.type === type), 1)[0]!;
}

async function failure(): Promise<SessionFailure> {
  return JSON.parse(new TextDecoder().decode((await next(ServingFrame.fail)).payload)) as SessionFailure;
}

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const send = (type: number, payload: Uint8Array) => raw.send(peer.peerId, type, payload);
const header = (sessionId: string, startPos = 0) => ({ sessionId, requestId: 7, startPos, hop: 0, layerStart: 0, layerEnd: 2 });

describe('a serving peer refuses bad frames with fail frames', () => {
  it('answers each bad setup and activation with its code, then serves a good one', async () => {
    const setup: SessionSetup = { sessionId: randomSessionId(), modelId: 'tiny-llama', hops: route([peer, 0, 2]), client: raw.peerId };
    const refusedSetups: [unknown, string][] = [
      [{ ...setup, hops: route([peer, 0, 3]) }, 'ERR_INVALID_ARGUMENT'],
      [{ ...setup, modelId: 'tiny-gpt2' }, 'ERR_NO_ROUTE'],
      [{ ...setup, client: 'someone-else' }, 'ERR_INVALID_ARGUMENT'],
      [{ ...setup, hops: route(['frames-other', 0, 2]) }, 'ERR_INVALID_ARGUMENT'],
    ];
    for (const [bad, code] of refusedSetups) {
      await send(ServingFrame.session, json({ ...(bad as object), sessionId: randomSessionId() }));
      expect((await failure()).code).toBe(code);
    }
    await send(ServingFrame.session, json(setup));
    expect(JSON.parse(new TextDecoder().decode((await next(ServingFrame.session)).payload))).toEqual(setup);

    const id = setup.sessionId;
    const inconsistent = encodeActivation({ ...header(id), tokens: 1, hidden: H, dtype: 'f16' }, new Uint8Array(H * 2));
    new DataView(inconsistent.buffer).setUint16(16, 2, true); // says 2 tokens, carries 1
    const refused: [Uint8Array, string, string][] = [
      [new Uint8Array([1, 2, 3]), 'ERR_FRAME_MALFORMED', '0000000000000000'],
      [encodeActivation({ ...header(id), tokens: 2, hidden: H, dtype: 'f16' }, new Uint8Array(new Uint16Array(2 * H).fill(0x7e00).buffer)), 'ERR_INVALID_ARGUMENT', id],
      [encodeHidden(header(id), new Float32Array(4 * 32), 4, 32), 'ERR_SHAPE_MISMATCH', id],
      [inconsistent, 'ERR_SHAPE_MISMATCH', id],
      [encodeHidden({ ...header(id), layerEnd: 1 }, new Float32Array(H), 1, H), 'ERR_SHAPE_MISMATCH', id],
      [encodeHidden({ ...header(id), hop: 1 }, new Float32Array(H), 1, H), 'ERR_SHAPE_MISMATCH', id],
      [encodeHidden(header(randomSessionId()), new Float32Array(H), 1, H), 'ERR_SESSION_EVICTED', ''],
      [encodeHidden(header(id, 3), new Float32Array(H), 1, H), 'ERR_INVALID_ARGUMENT', id],
    ];
    for (const [payload, code, sessionId] of refused) {
      await send(ServingFrame.forward, payload);
      const f = await failure();
      expect([f.code, f.peerId]).toEqual([code, peer.peerId]);
      if (sessionId) expect(f.sessionId).toBe(sessionId);
    }
    // Malformed control frames are dropped without an answer (there is no session to name).
    await send(ServingFrame.session, new Uint8Array([0x7b]));
    await send(ServingFrame.release, json({ nope: 1 }));

    // A good frame: the result is the local shard's output on the same f16 input, rounded to f16.
    const head = await net.head('tiny-llama');
    const positions = Uint32Array.from([0, 1, 2, 3, 4]);
    const input = wireRound(await head.embed(Uint32Array.from([1, 40, 41, 42, 43]), positions));
    await send(ServingFrame.forward, encodeHidden(header(id), input, 5, H));
    // It comes signed: a leaf of what the hop was given and what it sends, then the frame.
    const signed = unwrapSigned((await next(ServingFrame.signed)).payload)!;
    expect(signed.type).toBe(ServingFrame.result);
    const leaf = JSON.parse(new TextDecoder().decode(signed.leaf)) as SignedLeaf;
    expect(await leafValid(leaf)).toBe(true);
    expect(leaf).toMatchObject({ peerId: peer.peerId, requestId: 7, start: 0, end: 2, output: toBase64Url(await contentRoot(signed.payload)) });
    const result = decodeActivation(signed.payload);
    expect(result.header).toMatchObject({ sessionId: id, requestId: 7, tokens: 5, hidden: H, dtype: 'f16', layerStart: 0, layerEnd: 2 });
    const local = await Shard.load(await openFixture('tiny-llama'), { start: 0, end: 2, backend: 'cpu' });
    const expected = wireRound(await local.forward(input, positions, 'local'));
    local.destroy();
    expect(new Uint8Array(result.values.slice().buffer)).toEqual(new Uint8Array(encodeHidden(header(id), expected, 5, H).subarray(32)));

    expect(peer.sessionCount).toBe(1);
    await send(ServingFrame.release, json({ sessionId: id }));
    await waitFor(() => peer.sessionCount === 0, 5000, 'session released');
    expect(inbox.filter((f) => f.type === ServingFrame.fail)).toEqual([]);
  });

  it('releases sessions that stay idle, and those of a client that left', async () => {
    const idle = await net.peer('frames', 'frames-idle', { sessionIdleMs: 300 });
    await idle.assign(await net.spec('tiny-llama'), 0, 2);
    const client = await net.join('frames', 'frames-client-3');
    const got: Frame[] = [];
    client.on('frame', (_from, f) => got.push(f));
    const setup = (sessionId: string): SessionSetup => ({ sessionId, modelId: 'tiny-llama', hops: route([idle, 0, 2]), client: client.peerId });
    const [quiet, kept] = [randomSessionId(), randomSessionId()];
    for (const id of [quiet, kept]) await client.send(idle.peerId, ServingFrame.session, json(setup(id)));
    await waitFor(() => got.filter((f) => f.type === ServingFrame.session).length === 2, 5000, 'both acknowledged');
    await waitFor(() => idle.sessionCount === 0, 5000, 'idle sessions released');
    // A step on a released session is refused as evicted: its client replays it.
    await client.send(idle.peerId, ServingFrame.forward, encodeHidden(header(quiet, 4), new Float32Array(H), 1, H));
    await waitFor(() => got.some((f) => f.type === ServingFrame.fail), 5000, 'fail frame');
    expect(JSON.parse(new TextDecoder().decode(got.find((f) => f.type === ServingFrame.fail)!.payload))).toMatchObject({ code: 'ERR_SESSION_EVICTED', sessionId: quiet });

    const gone = await net.peer('frames', 'frames-keep', { sessionIdleMs: 60_000 });
    await gone.assign(await net.spec('tiny-llama'), 0, 2);
    await client.send(gone.peerId, ServingFrame.session, json({ ...setup(kept), hops: route([gone, 0, 2]) }));
    await waitFor(() => gone.sessionCount === 1, 5000, 'session set up');
    client.close();
    await waitFor(() => gone.sessionCount === 0, 5000, 'sessions of a departed client released');
  });

  it("a client whose own frames are refused gets the error at once instead of a failover", async () => {
    const mesh = await net.join('frames', 'frames-client-2');
    const events: unknown[] = [];
    const chain = await net.chain(mesh, 'tiny-llama', [route([peer, 0, 2])], { numLayers: 2, hiddenSize: 32, onFailover: (e) => events.push(e) });
    const err = await chain.forward(new Float32Array(32), Uint32Array.of(0), 's').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_SHAPE_MISMATCH', blame: mesh.peerId });
    expect(events).toEqual([]);
    expect(chain.badPeers()).toEqual([]);
  });
});

describe('signed frames between hops', () => {
  it('a hop takes a forward only with its sender\'s valid leaf, and hands the kept frame to the session\'s client only', async () => {
    // raw is the client and hop 0 (layers [0, 1)); the peer is hop 1, so its inputs must be signed.
    const open = async () => {
      const id = randomSessionId();
      const hops = [{ peerId: raw.peerId, start: 0, end: 1 }, { peerId: peer.peerId, start: 1, end: 2 }];
      await send(ServingFrame.session, json({ sessionId: id, modelId: 'tiny-llama', hops, client: raw.peerId } satisfies SessionSetup));
      await next(ServingFrame.session);
      return id;
    };
    const frame = (id: string, requestId: number, startPos: number) =>
      encodeHidden({ sessionId: id, requestId, startPos, hop: 1, layerStart: 1, layerEnd: 2 }, Float32Array.from({ length: H }, (_, i) => Math.sin(i + startPos)), 1, H);
    const leafOf = async (id: string, requestId: number, bytes: Uint8Array) =>
      encodeControl(await signLeaf(raw.identity, { network: raw.network, modelId: 'tiny-llama', sessionId: id, client: raw.peerId, start: 0, end: 1, requestId }, new Uint8Array(32), await contentRoot(bytes)));

    // Plain, as a client may send to hop 0 only: refused, naming the sender.
    const first = await open();
    await send(ServingFrame.forward, frame(first, 1, 0));
    expect(await failure()).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', blame: raw.peerId, message: expect.stringContaining('without') });
    // Unreadable signed bytes are dropped without an answer; a leaf of other bytes is refused, its
    // output never sent, and the session dropped.
    await send(ServingFrame.signed, new Uint8Array([39, 255, 255, 255, 255]));
    await send(ServingFrame.signed, wrapSigned(ServingFrame.forward, await leafOf(first, 2, frame(first, 9, 5)), frame(first, 2, 0)));
    expect(await failure()).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', blame: raw.peerId, message: expect.stringContaining('does not match') });
    await new Promise((r) => setTimeout(r, 300));
    expect(inbox.filter((f) => f.type === ServingFrame.signed)).toEqual([]);

    // A valid one on a new session is served, its result signed by the peer.
    const sessionId = await open();
    const good = frame(sessionId, 3, 0);
    const signed = wrapSigned(ServingFrame.forward, await leafOf(sessionId, 3, good), good);
    await send(ServingFrame.signed, signed);
    const result = unwrapSigned((await next(ServingFrame.signed)).payload)!;
    expect(result.type).toBe(ServingFrame.result);
    expect(JSON.parse(new TextDecoder().decode(result.leaf))).toMatchObject({ peerId: peer.peerId, requestId: 3, start: 1, end: 2 });

    // The kept frame goes to the session's client as it came, and to nobody else.
    const stranger = await net.join('frames', 'frames-stranger');
    const strangerInbox: Frame[] = [];
    stranger.on('frame', (_from, f) => strangerInbox.push(f));
    await stranger.send(peer.peerId, ServingFrame.ask, json({ sessionId, requestId: 3 }));
    await send(ServingFrame.ask, json({ sessionId, requestId: 3 }));
    expect((await next(ServingFrame.kept)).payload).toEqual(signed);
    await send(ServingFrame.ask, json({ sessionId, requestId: 3, extra: 'x'.repeat(100_000) }));
    await new Promise((r) => setTimeout(r, 300));
    expect(strangerInbox.filter((f) => f.type === ServingFrame.kept)).toEqual([]);
    expect(inbox.filter((f) => f.type === ServingFrame.kept)).toEqual([]); // the oversized ask got nothing
    await send(ServingFrame.release, json({ sessionId }));
  });
});
