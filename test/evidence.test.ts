// The evidence a client shows the coordinator: Merkle proofs of output chunks, content digests
// that ignore the session and route, signed leaves, and judge() on accusations built from real
// signatures: it convicts a hop in a clear minority, names forgery ERR_BAD_EVIDENCE whatever part
// was forged, and answers ERR_INCONCLUSIVE to genuine evidence that does not convict.
import { describe, expect, it } from 'vitest';
import {
  chunkLeaf,
  contentRoot,
  encodeHidden,
  encodeLogits,
  frameContent,
  judge,
  merkleProof,
  merkleRoot,
  merkleVerify,
  signLeaf,
  signTicket,
  toBase64Url,
  type Accusation,
  type Hop,
} from '../protocol/index.ts';
import { testIdentity } from './helpers/identities.ts';

describe('Merkle proofs', () => {
  it('prove every leaf of every tree size at its index, and nothing else', () => {
    for (let n = 1; n <= 9; n++) {
      const leaves = Array.from({ length: n }, (_, i) => Uint8Array.of(i, n));
      const root = merkleRoot(leaves);
      for (let i = 0; i < n; i++) {
        const path = merkleProof(leaves, i);
        expect(merkleVerify(leaves[i]!, i, n, path, root)).toBe(true);
        expect(merkleVerify(leaves[i]!, (i + 1) % n, n, path, root) && n > 1).toBe(false);
        expect(merkleVerify(Uint8Array.of(99), i, n, path, root)).toBe(false);
      }
    }
  });
});

describe('content digests', () => {
  it('cover the shape and values of a frame, not its session or route', async () => {
    const values = Float32Array.from({ length: 8 }, (_, i) => i / 3);
    const a = encodeHidden({ sessionId: '0123456789abcdef', requestId: 1, startPos: 4, hop: 0, layerStart: 0, layerEnd: 2 }, values, 2, 4);
    const b = encodeHidden({ sessionId: 'fedcba9876543210', requestId: 1, startPos: 4, hop: 2, layerStart: 5, layerEnd: 9 }, values, 2, 4);
    const c = encodeHidden({ sessionId: '0123456789abcdef', requestId: 1, startPos: 5, hop: 0, layerStart: 0, layerEnd: 2 }, values, 2, 4);
    const d = encodeHidden({ sessionId: '0123456789abcdef', requestId: 1, startPos: 4, hop: 0, layerStart: 0, layerEnd: 2 }, values.map((v) => v + 1), 2, 4);
    const [ra, rb, rc, rd] = await Promise.all([a, b, c, d].map(contentRoot));
    expect(ra).toEqual(rb);
    expect(ra).not.toEqual(rc);
    expect(ra).not.toEqual(rd);
  });
});

// A network of three routes over layers [0, 4): the accused and two replacements hold [0, 2),
// the same peer holds [2, 4) on all three.
const server = testIdentity('evidence-server');
const client = testIdentity('evidence-client');
const [accused, witness1, witness2, tail] = ['evidence-liar', 'evidence-w1', 'evidence-w2', 'evidence-tail'].map(testIdentity) as [
  ReturnType<typeof testIdentity>,
  ReturnType<typeof testIdentity>,
  ReturnType<typeof testIdentity>,
  ReturnType<typeof testIdentity>,
];
const network = 'evidence-net';
const modelId = 'tiny-llama';
const sessions = ['00000000000000a1', '00000000000000a2', '00000000000000a3'];

async function segment(hopId: typeof accused, sessionId: string, output: Uint8Array, picks?: number[], ticketClient = client.peerId) {
  const hops: Hop[] = [
    { peerId: hopId.peerId, start: 0, end: 2 },
    { peerId: tail.peerId, start: 2, end: 4 },
  ];
  const ticket = await signTicket(server, { network, modelId, client: ticketClient, hops, expires: Date.now() + 60_000 });
  const input = await contentRoot(encodeHidden({ sessionId, requestId: 3, startPos: 0, hop: 0, layerStart: 0, layerEnd: 2 }, Float32Array.of(1, 2, 3, 4), 1, 4));
  const leaf = await signLeaf(hopId, { network, modelId, sessionId, client: client.peerId, start: 0, end: 2, requestId: 3 }, input, await contentRoot(output));
  const { shape, chunks } = frameContent(output);
  const leaves = await Promise.all(chunks.map(chunkLeaf));
  const chosen = picks ?? chunks.map((_, i) => i);
  return {
    hops,
    ticket,
    first: leaf,
    last: leaf,
    output: {
      shape: toBase64Url(shape),
      valuesRoot: toBase64Url(merkleRoot(leaves)),
      chunks: chunks.length,
      picks: chosen.map((index) => ({ index, bytes: toBase64Url(chunks[index]!), path: merkleProof(leaves, index).map(toBase64Url) })),
    },
  };
}

function hidden(sessionId: string, values: Float32Array): Uint8Array {
  return encodeHidden({ sessionId, requestId: 3, startPos: 0, hop: 1, layerStart: 2, layerEnd: 4 }, values, 1, values.length);
}

const truth = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
const lie = truth.map((v, i) => v + (i % 2 ? 0.2 : -0.2));

async function accusation(outputs: [Float32Array, Float32Array, Float32Array] = [lie, truth, truth]): Promise<Accusation> {
  return {
    modelId,
    requestId: 3,
    segments: [
      await segment(accused, sessions[0]!, hidden(sessions[0]!, outputs[0])),
      await segment(witness1, sessions[1]!, hidden(sessions[1]!, outputs[1])),
      await segment(witness2, sessions[2]!, hidden(sessions[2]!, outputs[2])),
    ],
  };
}

const ctx = { network, client: client.peerId, serverKey: server.publicKey };

describe('judging an accusation', () => {
  it('convicts the one hop whose signed output two others on the same input disagree with', async () => {
    const verdict = await judge(await accusation(), ctx);
    expect(verdict.accused).toBe(accused.peerId);
    expect(verdict.witnesses).toEqual([witness1.peerId, witness2.peerId]);
    expect(verdict.differences[2]).toBe(0);
  });

  it('convicts on a few chunks of a large output: 100,000 logits in 7 chunks, 3 of them shown', async () => {
    const big = Float32Array.from({ length: 100_000 }, (_, i) => Math.cos(i));
    const wrong = big.map((v, i) => (i >= 70_000 && i < 75_000 ? v + 3 : v));
    const logits = (sessionId: string, values: Float32Array) => encodeLogits({ sessionId, requestId: 3, startPos: 0, tokens: 1, hop: 1, layerStart: 0, layerEnd: 4 }, values);
    const a: Accusation = {
      modelId,
      requestId: 3,
      segments: [
        await segment(accused, sessions[0]!, logits(sessions[0]!, wrong), [0, 4, 6]),
        await segment(witness1, sessions[1]!, logits(sessions[1]!, big), [0, 4, 6]),
        await segment(witness2, sessions[2]!, logits(sessions[2]!, big), [0, 4, 6]),
      ],
    };
    expect(a.segments[0]!.output.chunks).toBe(7);
    expect((await judge(a, ctx)).accused).toBe(accused.peerId);
  });

  it('names every kind of forgery ERR_BAD_EVIDENCE', async () => {
    const forgeries: [string, (a: Accusation) => Promise<void> | void][] = [
      ['an output byte changed', (a) => void (a.segments[0]!.output.picks[0]!.bytes = a.segments[0]!.output.picks[0]!.bytes.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')))],
      ['an output the hop did not sign', async (a) => void (a.segments[0] = { ...(await segment(accused, sessions[0]!, hidden(sessions[0]!, lie))), output: a.segments[1]!.output })],
      ['a leaf signed by another key', async (a) => {
        const other = await signLeaf(witness1, { ...a.segments[0]!.first, requestId: 3 }, new Uint8Array(32), new Uint8Array(32));
        a.segments[0]!.first = a.segments[0]!.last = { ...other, peerId: accused.peerId };
      }],
      ['a route ticketed for another client', async (a) => void (a.segments[1] = await segment(witness1, sessions[1]!, hidden(sessions[1]!, truth), undefined, witness2.peerId))],
      ['a route the coordinator never signed', (a) => void (a.segments[2]!.hops = [{ peerId: witness2.peerId, start: 0, end: 4 }])],
      ['a leaf of another request', (a) => void (a.requestId = 4)],
      // A path that also fits a smaller tree would pass the last chunk off as another: the count is signed.
      ['another chunk count', (a) => void (a.segments[0]!.output.chunks = 2)],
    ];
    for (const [what, forge] of forgeries) {
      const a = await accusation();
      await forge(a);
      await expect(judge(a, ctx), what).rejects.toMatchObject({ code: 'ERR_BAD_EVIDENCE' });
    }
  });

  it('answers ERR_INCONCLUSIVE to genuine evidence that convicts nobody', async () => {
    // All three agree: nobody was wrong.
    await expect(judge(await accusation([truth, truth, truth]), ctx)).rejects.toMatchObject({ code: 'ERR_INCONCLUSIVE' });
    // The "accused" agrees with one witness: it is not the minority.
    await expect(judge(await accusation([truth, lie, truth]), ctx)).rejects.toMatchObject({ code: 'ERR_INCONCLUSIVE' });
    // One witness run twice is not two witnesses.
    const twice = await accusation();
    twice.segments[2] = twice.segments[1]!;
    await expect(judge(twice, ctx)).rejects.toMatchObject({ code: 'ERR_INCONCLUSIVE' });
  });
});
