// Accusations: a client that caught a hop in the minority of three runs shows the coordinator why,
// with nothing it could have made up. Three routes that the coordinator ticketed for this client
// ran the same request; on each, the hops covering one layer range signed what came in and what
// went out (evidence.ts). The evidence shows the three segments got the same
// input and carries their signed outputs (all of them, or up to three 64 KiB chunks of a large
// one); the coordinator recomputes the differences and applies the clients' own rule
// (agreement.ts). Only a segment of one hop in the minority can be convicted: one peer signed
// that output. Evidence that fails a check is forgery (ERR_BAD_EVIDENCE); genuine evidence that
// shows no clear minority is ERR_INCONCLUSIVE.
import { z } from 'zod';
import { DEFAULT_VERIFY_TOLERANCE, difference, majority } from './agreement.ts';
import { AigridError } from './errors.ts';
import { chunkLeaf, contentRootOf, DigestSchema, EVIDENCE_CHUNK_BYTES, leafValid, SignedLeafSchema, merkleVerify, sameBytes } from './evidence.ts';
import { f16ToF32 } from './f16.ts';
import { fromBase64Url } from './identity.ts';
import { HopSchema, ModelIdSchema } from './serving.ts';
import { RouteTicketSchema, ticketValid } from './tickets.ts';

/** Chunks of an output an accusation carries at most (a whole output when it has no more). */
export const MAX_EVIDENCE_PICKS = 3;
/** How old a route's ticket may be (past its expiry) for its runs to count as evidence. */
export const EVIDENCE_MAX_AGE_MS = 30 * 60_000;

const OutputEvidenceSchema = z.object({
  /** base64url of the output frame's 9 shape bytes (start position, tokens, width, dtype). */
  shape: z.string().regex(/^[A-Za-z0-9_-]{12}$/),
  valuesRoot: DigestSchema,
  chunks: z.number().int().min(1).max(65536),
  picks: z
    .array(
      z.object({
        index: z.number().int().nonnegative(),
        bytes: z.string().max(Math.ceil((EVIDENCE_CHUNK_BYTES * 4) / 3)),
        path: z.array(DigestSchema).max(32),
      }),
    )
    .min(1)
    .max(MAX_EVIDENCE_PICKS),
});

/** One route's run of the request: the route as ticketed, and the signed leaves of the segment's first and last hop. */
const SegmentEvidenceSchema = z.object({
  hops: z.array(HopSchema).min(1).max(255),
  ticket: RouteTicketSchema,
  /** The signed leaves of the segment's first hop (its input) and last hop (its output). */
  first: SignedLeafSchema,
  last: SignedLeafSchema,
  output: OutputEvidenceSchema,
});

/** Segment 0 holds the accused hop; segments 1 and 2 the runs that replaced it. */
export const AccusationSchema = z.object({
  modelId: ModelIdSchema,
  requestId: z.number().int().min(0).max(0xffffffff),
  segments: z.array(SegmentEvidenceSchema).length(3),
});

export type Accusation = z.infer<typeof AccusationSchema>;
export type SegmentEvidence = z.infer<typeof SegmentEvidenceSchema>;
export type OutputEvidence = z.infer<typeof OutputEvidenceSchema>;

/** Genuine evidence that convicts nobody: the accused was given other input than the others, or its output agrees with theirs. */
export class Inconclusive extends AigridError {
  constructor(message: string) {
    super('ERR_INCONCLUSIVE', message);
  }
}

export interface JudgeContext {
  network: string;
  /** The accuser: every ticket and receipt must name it as the client. */
  client: string;
  /** The coordinator's public key, which signed the tickets. */
  serverKey: string;
  tolerance?: number;
  now?: number;
}

export interface Judgement {
  accused: string;
  /** The peers whose runs agreed with each other and not with the accused. */
  witnesses: string[];
  /** Relative differences: accused against each witness run, then the witness runs against each other. */
  differences: [number, number, number];
}

/** Checks an accusation; the accused peer when the evidence convicts it, else ERR_BAD_EVIDENCE or ERR_INCONCLUSIVE. */
export async function judge(accusation: Accusation, ctx: JudgeContext): Promise<Judgement> {
  const now = ctx.now ?? Date.now();
  const runs: { segment: SegmentEvidence; peers: string[]; values: Float32Array; shape: Uint8Array }[] = [];
  for (const [i, segment] of accusation.segments.entries()) {
    const forged = (why: string) => new AigridError('ERR_BAD_EVIDENCE', `segment ${i}: ${why}`);
    const { first, last, hops, ticket, output } = segment;
    if (ticket.expires < now - EVIDENCE_MAX_AGE_MS) throw new Inconclusive(`segment ${i}: its route ticket expired too long ago`);
    const fields = { network: ctx.network, modelId: accusation.modelId, client: ctx.client, hops };
    if (!(await ticketValid(ctx.serverKey, ticket, fields, ticket.expires - 1))) throw forged('the route ticket is not the coordinator\'s for this client and route');
    const at = (p: typeof first) => hops.findIndex((h) => h.peerId === p.peerId && h.start === p.start && h.end === p.end);
    const [f, l] = [at(first), at(last)];
    if (f < 0 || l < f) throw forged('its receipts are not of hops on its route, in order');
    if (first.sessionId !== last.sessionId) throw forged('its two receipts are of different sessions');
    for (const proof of f === l ? [first] : [first, last]) {
      if (proof.network !== ctx.network || proof.modelId !== accusation.modelId || proof.client !== ctx.client) throw forged(`${proof.peerId}'s receipt is for another network, model or client`);
      if (proof.requestId !== accusation.requestId) throw forged(`${proof.peerId}'s leaf is of request ${proof.requestId}, not ${accusation.requestId}`);
      if (!(await leafValid(proof))) throw forged(`${proof.peerId}'s leaf is not signed by its key`);
    }
    const shape = fromBase64Url(output.shape);
    if (shape.byteLength !== 9 || !sameBytes(contentRootOf(shape, output.chunks, fromBase64Url(output.valuesRoot)), fromBase64Url(last.output))) {
      throw forged(`the output is not the one ${last.peerId} signed`);
    }
    const chunks: Uint8Array[] = [];
    for (const [k, pick] of output.picks.entries()) {
      if (k > 0 && pick.index <= output.picks[k - 1]!.index) throw forged('output chunks out of order');
      const bytes = fromBase64Url(pick.bytes);
      const valid = merkleVerify(await chunkLeaf(bytes), pick.index, output.chunks, pick.path.map(fromBase64Url), fromBase64Url(output.valuesRoot));
      if (!valid) throw forged(`output chunk ${pick.index} is not under the signed output`);
      chunks.push(bytes);
    }
    runs.push({ segment, peers: hops.slice(f, l + 1).map((h) => h.peerId), values: decodeValues(shape[8]!, chunks), shape });
  }

  const inconclusive = (why: string) => new Inconclusive(why);
  const [accused, ...witnessRuns] = runs as [(typeof runs)[0], (typeof runs)[0], (typeof runs)[0]];
  const range = (r: (typeof runs)[0]) => `${r.segment.first.start},${r.segment.last.end}`;
  if (runs.some((r) => range(r) !== range(accused))) throw inconclusive('the segments cover different layers');
  if (new Set(runs.map((r) => r.segment.first.sessionId)).size !== 3) throw inconclusive('the segments are not three sessions');
  if (runs.some((r) => r.segment.first.input !== accused.segment.first.input)) throw inconclusive('the segments did not get the same input');
  const comparable = (r: (typeof runs)[0]) => sameBytes(r.shape, accused.shape) && r.segment.output.picks.map((p) => p.index).join() === accused.segment.output.picks.map((p) => p.index).join();
  if (!runs.every(comparable)) throw inconclusive('the outputs are not the same shape and chunks');
  if (accused.peers.length !== 1) throw inconclusive('the accused segment has more than one hop');
  const [suspect] = accused.peers as [string];
  const witnesses = witnessRuns.flatMap((r) => r.peers);
  if (new Set(witnesses).size !== witnesses.length || witnesses.includes(suspect) || [suspect, ...witnesses].includes(ctx.client)) {
    throw inconclusive('the witnesses are not distinct from each other, the accused and the accuser');
  }
  const [a, b, c] = runs.map((r) => [r.values]) as [Float32Array[], Float32Array[], Float32Array[]];
  const differences: [number, number, number] = [difference(a, b), difference(a, c), difference(b, c)];
  const tolerance = ctx.tolerance ?? DEFAULT_VERIFY_TOLERANCE;
  if (majority(...differences, tolerance) !== 'caught') {
    throw new Inconclusive(`the accused is not in a clear minority (differences ${differences.map((d) => d.toFixed(4)).join(', ')})`);
  }
  return { accused: suspect, witnesses, differences };
}

/** A chunk's values as f32, by its frame's dtype byte (1: f16, else f32). */
export function chunkValues(chunk: Uint8Array, dtype: number): Float32Array {
  const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (dtype === 1) return Float32Array.from({ length: chunk.byteLength >> 1 }, (_, i) => f16ToF32(view.getUint16(i * 2, true)));
  return Float32Array.from({ length: chunk.byteLength >> 2 }, (_, i) => view.getFloat32(i * 4, true));
}

function decodeValues(dtype: number, chunks: readonly Uint8Array[]): Float32Array {
  const parts = chunks.map((c) => chunkValues(c, dtype));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
