// Builds the evidence of an accusation (protocol/accusation.ts) from what the client kept: the
// three runs' receipts and the output each segment signed, taken from the client's own results
// or asked of the hop after the segment. The client judges it itself with the coordinator's rule
// before sending, so an honest client never sends evidence the coordinator would refuse.
import {
  AigridError,
  chunkLeaf,
  contentRoot,
  frameContent,
  MAX_EVIDENCE_PICKS,
  merkleProof,
  merkleRoot,
  sameBytes,
  fromBase64Url,
  toBase64Url,
  chunkValues,
  type Accusation,
  type OutputEvidence,
} from '../../protocol/index.ts';
import type { Route } from '../mesh/signaling-client.ts';
import type { EvidenceKeeper } from './evidence-keeper.ts';

/** One run of the request: the route it went over and its session there. */
export interface RunRef {
  route: Route;
  sessionId: string;
}

/**
 * Evidence that `accused` (the only hop of its segment on `runs[0]`) returned for `requestId` an
 * output the other two runs, with other peers on its layers, did not.
 */
export async function gatherAccusation(keeper: EvidenceKeeper, modelId: string, requestId: number, accused: string, runs: readonly [RunRef, RunRef, RunRef]): Promise<Accusation> {
  const hop = runs[0].route.hops.find((h) => h.peerId === accused);
  if (!hop) throw new AigridError('ERR_INVALID_ARGUMENT', `${accused} is not on the accused run's route`);
  const gathered = await Promise.all(runs.map((run) => gatherSegment(keeper, run, requestId, hop.start, hop.end)));
  const contents = gathered.map((g) => frameContent(g.payload));
  const picks = pickChunks(contents.map((c) => c.chunks), gathered[0]!.payload[20]!);
  const segments = await Promise.all(
    gathered.map(async (g, i) => {
      const { hops, ticket } = runs[i]!.route;
      if (!ticket) throw new AigridError('ERR_INVALID_ARGUMENT', 'a run without a route ticket is no evidence');
      return { hops, ticket, first: g.first, last: g.last, output: await outputEvidence(contents[i]!.shape, contents[i]!.chunks, picks) };
    }),
  );
  return { modelId, requestId, segments };
}

/** A segment's first hop's leaf (its input) and its last hop's leaf and output, from whoever received them. */
async function gatherSegment(keeper: EvidenceKeeper, run: RunRef, requestId: number, start: number, end: number) {
  const hops = run.route.hops;
  const f = hops.findIndex((h) => h.start === start);
  const l = hops.findIndex((h) => h.end === end);
  if (f < 0 || l < f) throw new AigridError('ERR_INVALID_ARGUMENT', `the route has no hops that cover exactly layers [${start}, ${end})`);
  const receivedFrom = (i: number) => keeper.frame(run.sessionId, requestId, hops[i + 1]?.peerId ?? null);
  const [firstOut, lastOut] = await Promise.all([receivedFrom(f), f === l ? null : receivedFrom(l)]);
  const last = lastOut ?? firstOut;
  for (const [i, got] of [[f, firstOut], [l, last]] as const) {
    if (got.leaf.peerId !== hops[i]!.peerId || !sameBytes(await contentRoot(got.payload), fromBase64Url(got.leaf.output))) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `the frame kept for ${hops[i]!.peerId}'s output does not match its signed leaf`);
    }
  }
  return { first: firstOut.leaf, last: last.leaf, payload: last.payload };
}

/** Every chunk when there are few; else those where the accused run differs most from the first witness. */
function pickChunks(chunks: readonly Uint8Array[][], dtype: number): number[] {
  const count = chunks[0]!.length;
  if (count <= MAX_EVIDENCE_PICKS) return [...Array(count).keys()];
  const distance = (i: number) => {
    const [a, b] = [chunkValues(chunks[0]![i]!, dtype), chunkValues(chunks[1]![i] ?? new Uint8Array(), dtype)];
    let d = 0;
    for (let k = 0; k < a.length; k++) d += (a[k]! - (b[k] ?? 0)) ** 2;
    return d;
  };
  const scored = [...Array(count).keys()].map((i) => [i, distance(i)] as const);
  return scored.sort((x, y) => y[1] - x[1]).slice(0, MAX_EVIDENCE_PICKS).map(([i]) => i).sort((x, y) => x - y);
}

async function outputEvidence(shape: Uint8Array, chunks: readonly Uint8Array[], picks: readonly number[]): Promise<OutputEvidence> {
  const leaves = await Promise.all(chunks.map(chunkLeaf));
  return {
    shape: toBase64Url(shape),
    valuesRoot: toBase64Url(merkleRoot(leaves)),
    chunks: chunks.length,
    picks: picks.map((index) => ({ index, bytes: toBase64Url(chunks[index]!), path: merkleProof(leaves, index).map(toBase64Url) })),
  };
}
