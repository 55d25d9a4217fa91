// What a hop commits to about its work. Every output frame a hop sends carries a signed leaf: the
// session, its layers, the request id, and the digests of the frame's input and of its output.
// The receiver (the next hop, or the client) checks it and keeps it with the frame a while, so the
// client can later show anyone what the hop was given and what it answered. A frame's content
// digest covers its shape (start position, tokens, width, dtype) and values, not its session or
// route, so the same input reaching three hops on three routes digests the same. Values are hashed
// in 64 KiB chunks under a Merkle root, so an accusation can carry a few chunks of a large output
// (a vocabulary of logits) with their proofs.
import { sha256 } from '@noble/hashes/sha2.js';
import { z } from 'zod';
import { ACTIVATION_HEADER_BYTES } from './activation.ts';
import { PeerIdSchema, NetworkSchema } from './ids.ts';
import { peerIdOf, PublicKeySchema, SignatureSchema, toBase64Url, verifySignature, type Identity } from './identity.ts';
import { ModelIdSchema } from './serving.ts';
import { SessionIdSchema } from './session.ts';

/** Bytes of values per hashed chunk. */
export const EVIDENCE_CHUNK_BYTES = 64 * 1024;
/** Above this many bytes WebCrypto's native digest beats the JS one despite its async cost. */
const NATIVE_DIGEST_BYTES = 16 * 1024;

const enum Tag {
  chunk = 0,
  node = 1,
  content = 2,
}

/** base64url of a SHA-256 digest. */
export const DigestSchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'digest: 43 base64url characters (32 bytes)');

function tagged(tag: Tag, ...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(1 + parts.reduce((n, p) => n + p.byteLength, 0));
  out[0] = tag;
  let at = 1;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

async function digest(bytes: Uint8Array): Promise<Uint8Array> {
  const subtle = (globalThis.crypto as Crypto | undefined)?.subtle;
  if (subtle && bytes.byteLength > NATIVE_DIGEST_BYTES) return new Uint8Array(await subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return sha256(bytes);
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}

/** The Merkle root of leaves: pairs hash together level by level; an odd last node goes up as it is. */
export function merkleRoot(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return sha256(tagged(Tag.node));
  let level = leaves;
  while (level.length > 1) level = up(level);
  return level[0]!;
}

function up(level: readonly Uint8Array[]): Uint8Array[] {
  const next: Uint8Array[] = [];
  for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? sha256(tagged(Tag.node, level[i]!, level[i + 1]!)) : level[i]!);
  return next;
}

/** The sibling hashes from leaf `index` up to the root. */
export function merkleProof(leaves: readonly Uint8Array[], index: number): Uint8Array[] {
  const path: Uint8Array[] = [];
  let level = leaves;
  for (let i = index; level.length > 1; i >>= 1) {
    const sibling = level[i ^ 1];
    if (sibling) path.push(sibling);
    level = up(level);
  }
  return path;
}

/** Whether `leaf` sits at `index` of `count` leaves under `root`. */
export function merkleVerify(leaf: Uint8Array, index: number, count: number, path: readonly Uint8Array[], root: Uint8Array): boolean {
  if (!Number.isInteger(index) || index < 0 || index >= count) return false;
  let node = leaf;
  let used = 0;
  for (let i = index, n = count; n > 1; i >>= 1, n = Math.ceil(n / 2)) {
    if ((i ^ 1) >= n) continue; // the odd last node: no sibling at this level
    const sibling = path[used++];
    if (!sibling) return false;
    node = sha256(i & 1 ? tagged(Tag.node, sibling, node) : tagged(Tag.node, node, sibling));
  }
  return used === path.length && sameBytes(node, root);
}

/** A frame's content: its 9 shape bytes (start position, tokens, width, dtype) and its values in chunks. */
export interface FrameContent {
  shape: Uint8Array;
  chunks: Uint8Array[];
}

export function frameContent(payload: Uint8Array): FrameContent {
  const values = payload.subarray(ACTIVATION_HEADER_BYTES);
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < values.byteLength || chunks.length === 0; at += EVIDENCE_CHUNK_BYTES) chunks.push(values.subarray(at, at + EVIDENCE_CHUNK_BYTES));
  return { shape: payload.subarray(12, 21), chunks };
}

export function chunkLeaf(chunk: Uint8Array): Promise<Uint8Array> {
  return digest(tagged(Tag.chunk, chunk));
}

/** The count is bound too: a Merkle path alone would let a leaf pass for another index under another count. */
export function contentRootOf(shape: Uint8Array, chunks: number, valuesRoot: Uint8Array): Uint8Array {
  const count = new Uint8Array(4);
  new DataView(count.buffer).setUint32(0, chunks, true);
  return sha256(tagged(Tag.content, shape, count, valuesRoot));
}

/** The digest of an activation frame's content (see the top of this file). */
export async function contentRoot(payload: Uint8Array): Promise<Uint8Array> {
  const { shape, chunks } = frameContent(payload);
  return contentRootOf(shape, chunks.length, merkleRoot(await Promise.all(chunks.map(chunkLeaf))));
}

/** What a leaf's signature covers: who ran which layers of which session for whom, and the frame. */
export interface LeafFields {
  network: string;
  modelId: string;
  sessionId: string;
  client: string;
  peerId: string;
  start: number;
  end: number;
  requestId: number;
}

/**
 * A hop's signed statement about one frame it ran: given input content `input`, it sent output
 * content `output`. It travels with the output frame (wrapSigned) to whoever receives that frame.
 */
export const SignedLeafSchema = z.object({
  network: NetworkSchema,
  modelId: ModelIdSchema,
  sessionId: SessionIdSchema,
  client: PeerIdSchema,
  peerId: PeerIdSchema,
  publicKey: PublicKeySchema,
  start: z.number().int().nonnegative(),
  end: z.number().int().positive(),
  requestId: z.number().int().min(0).max(0xffffffff),
  input: DigestSchema,
  output: DigestSchema,
  signature: SignatureSchema,
});

export type SignedLeaf = z.infer<typeof SignedLeafSchema>;

function leafPayload(f: LeafFields, input: string, output: string): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(['aigrid-leaf-1', f.network, f.modelId, f.sessionId, f.client, f.peerId, f.start, f.end, f.requestId, input, output]));
}

export async function signLeaf(identity: Identity, fields: Omit<LeafFields, 'peerId'>, input: Uint8Array, output: Uint8Array): Promise<SignedLeaf> {
  const all = { ...fields, peerId: identity.peerId };
  const [i, o] = [toBase64Url(input), toBase64Url(output)];
  const signature = toBase64Url(await identity.sign(leafPayload(all, i, o)));
  return { ...all, publicKey: identity.publicKey, input: i, output: o, signature };
}

/** Whether the leaf is signed by the key of the peer it names. */
export async function leafValid(leaf: SignedLeaf): Promise<boolean> {
  return peerIdOf(leaf.publicKey) === leaf.peerId && verifySignature(leaf.publicKey, leafPayload(leaf, leaf.input, leaf.output), leaf.signature);
}

/** A signed leaf's JSON is about 500 bytes. */
export const MAX_LEAF_BYTES = 2048;

/**
 * An output frame with its sender's signed leaf, as one message (a data-channel send costs far
 * more than the bytes of a leaf): u8 frame type, u32 length of the leaf's JSON, the JSON, the frame.
 * Receivers keep it as it came, and hand it on as it came when a client asks (`kept`).
 */
export function wrapSigned(type: number, leaf: Uint8Array, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + leaf.byteLength + payload.byteLength);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, leaf.byteLength, true);
  out.set(leaf, 5);
  out.set(payload, 5 + leaf.byteLength);
  return out;
}

/** The frame type, leaf JSON and frame of a signed frame; undefined when it is not one. */
export function unwrapSigned(bytes: Uint8Array): { type: number; leaf: Uint8Array; payload: Uint8Array } | undefined {
  if (bytes.byteLength < 5) return undefined;
  const n = new DataView(bytes.buffer, bytes.byteOffset + 1, 4).getUint32(0, true);
  if (n > MAX_LEAF_BYTES || 5 + n > bytes.byteLength) return undefined;
  return { type: bytes[0]!, leaf: bytes.subarray(5, 5 + n), payload: bytes.subarray(5 + n) };
}
