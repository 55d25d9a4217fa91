// Hidden states between peers: data-channel frames (see frames.ts) whose payload starts with a
// fixed 32-byte header, then T x H values (f16 on the wire). Control frames of a session (route
// set-up, release, failure) carry JSON instead. A light session (SessionSetup.light) enters hop 0
// as token ids and leaves the last hop as logits, in the same header:
//   `tokens` frame: T x u32 token ids; hidden = 1, dtype = 3 (u32).
//   `logits` frame: V x f32 logits of the request's last token; tokens = the request's T, hidden =
//   0 (a vocabulary does not fit the u16), dtype = 2 (f32, so sampling sees the values unrounded).
//
// Header (little endian, 32 bytes):
//   0  u32 x2  session id (64 random bits; hex in JSON control frames)
//   8  u32     request id (chosen by the client, echoed in the result)
//   12 u32     start position of the first token
//   16 u16     tokens T
//   18 u16     hidden size H
//   20 u8      dtype (1 = f16, 2 = f32)
//   21 u8      hop index on the route (which hop this frame is addressed to)
//   22 u16     first layer of that hop
//   24 u16     end layer of that hop
//   26 u16     flags (none defined; 0)
//   28 u32     reserved (0)
import { AigridError } from './errors.ts';

export const ACTIVATION_HEADER_BYTES = 32;

/** Frame types of collective serving (frames.ts holds the base ones). */
export const ServingFrame = {
  /** JSON SessionSetup: the route of a session, sent by the client to each hop. */
  session: 32,
  /** Header + hidden states entering a hop. */
  forward: 33,
  /** Header + hidden states after the last hop, back to the client. */
  result: 34,
  /** JSON SessionFailure: a hop refused or could not run a request. */
  fail: 35,
  /** JSON {sessionId}: the session ended; hops release its KV caches. */
  release: 36,
  /** Header + token ids entering hop 0 of a light session (embedded there). */
  tokens: 37,
  /** Header + f32 logits of the last token, from the last hop of a light session to the client. */
  logits: 38,
} as const;

export const ActivationDtype = { f16: 1, f32: 2 } as const;
const U32_IDS = 3;

export interface ActivationHeader {
  sessionId: string;
  requestId: number;
  startPos: number;
  tokens: number;
  hidden: number;
  dtype: 'f16' | 'f32';
  hop: number;
  layerStart: number;
  layerEnd: number;
}

export interface SessionSetup {
  sessionId: string;
  modelId: string;
  /** The whole route; each hop forwards to the next, the last returns results to `client`. */
  hops: { peerId: string; start: number; end: number }[];
  client: string;
  /** Hop 0 takes token ids and embeds them; the last hop returns logits (see the frame types). */
  light?: true;
}

/** What a token-id or logits frame carries besides its values. */
export type PassHeader = Omit<ActivationHeader, 'hidden' | 'dtype'>;

export interface SessionFailure {
  sessionId: string;
  requestId: number;
  /** The hop that failed or refused. */
  peerId: string;
  code: string;
  message: string;
}

const SESSION_ID = /^[0-9a-f]{16}$/;

export function randomSessionId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('');
}

function bad(message: string): AigridError {
  return new AigridError('ERR_FRAME_MALFORMED', message);
}

export function encodeActivation(header: ActivationHeader, values: Uint8Array): Uint8Array {
  if (!SESSION_ID.test(header.sessionId)) throw new AigridError('ERR_INVALID_ARGUMENT', `session id must be 16 hex digits`);
  const width = header.dtype === 'f16' ? 2 : 4;
  if (values.byteLength !== header.tokens * header.hidden * width) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `activation of ${values.byteLength} bytes is not [${header.tokens}, ${header.hidden}] ${header.dtype}`);
  }
  return withHeader(header, header.hidden, ActivationDtype[header.dtype], values);
}

function withHeader(header: PassHeader, hidden: number, dtype: number, values: Uint8Array): Uint8Array {
  const out = new Uint8Array(ACTIVATION_HEADER_BYTES + values.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, Number.parseInt(header.sessionId.slice(8), 16), true);
  view.setUint32(4, Number.parseInt(header.sessionId.slice(0, 8), 16), true);
  view.setUint32(8, header.requestId >>> 0, true);
  view.setUint32(12, header.startPos >>> 0, true);
  view.setUint16(16, header.tokens, true);
  view.setUint16(18, hidden, true);
  view.setUint8(20, dtype);
  view.setUint8(21, header.hop);
  view.setUint16(22, header.layerStart, true);
  view.setUint16(24, header.layerEnd, true);
  out.set(values, ACTIVATION_HEADER_BYTES);
  return out;
}

/** Reads the header fields common to every activation frame, with its raw hidden and dtype codes. */
function readHeader(payload: Uint8Array): { header: PassHeader; hidden: number; dtype: number; view: DataView } {
  if (payload.byteLength < ACTIVATION_HEADER_BYTES) throw bad(`activation frame of ${payload.byteLength} bytes has no header`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (view.getUint16(26, true) !== 0 || view.getUint32(28, true) !== 0) throw bad('unknown activation flags');
  const hex = (v: number) => v.toString(16).padStart(8, '0');
  const header: PassHeader = {
    sessionId: hex(view.getUint32(4, true)) + hex(view.getUint32(0, true)),
    requestId: view.getUint32(8, true),
    startPos: view.getUint32(12, true),
    tokens: view.getUint16(16, true),
    hop: view.getUint8(21),
    layerStart: view.getUint16(22, true),
    layerEnd: view.getUint16(24, true),
  };
  if (header.tokens === 0) throw new AigridError('ERR_SHAPE_MISMATCH', 'activation frame of 0 tokens');
  if (header.layerEnd <= header.layerStart) throw bad(`empty layer range [${header.layerStart}, ${header.layerEnd})`);
  return { header, hidden: view.getUint16(18, true), dtype: view.getUint8(20), view };
}

/** A `tokens` frame: T token ids for hop 0 of a light session. */
export function encodeTokenIds(header: Omit<PassHeader, 'tokens'>, ids: Uint32Array): Uint8Array {
  if (!SESSION_ID.test(header.sessionId)) throw new AigridError('ERR_INVALID_ARGUMENT', `session id must be 16 hex digits`);
  if (ids.length === 0 || ids.length > 0xffff) throw new AigridError('ERR_SHAPE_MISMATCH', `a tokens frame carries 1 to 65535 ids, not ${ids.length}`);
  const bytes = new Uint8Array(ids.length * 4);
  const view = new DataView(bytes.buffer);
  ids.forEach((id, i) => view.setUint32(i * 4, id, true));
  return withHeader({ ...header, tokens: ids.length }, 1, U32_IDS, bytes);
}

export function decodeTokenIds(payload: Uint8Array): { header: PassHeader; ids: Uint32Array } {
  const { header, hidden, dtype, view } = readHeader(payload);
  if (dtype !== U32_IDS || hidden !== 1) throw bad(`a tokens frame has dtype 3 and width 1, not ${dtype} and ${hidden}`);
  if (payload.byteLength !== ACTIVATION_HEADER_BYTES + header.tokens * 4) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `tokens frame carries ${payload.byteLength - ACTIVATION_HEADER_BYTES} bytes for ${header.tokens} ids`);
  }
  const ids = Uint32Array.from({ length: header.tokens }, (_, i) => view.getUint32(ACTIVATION_HEADER_BYTES + i * 4, true));
  return { header, ids };
}

/** A `logits` frame: the f32 logits [V] of the last of a request's `header.tokens` tokens. */
export function encodeLogits(header: PassHeader, logits: Float32Array): Uint8Array {
  const bytes = new Uint8Array(logits.length * 4);
  const view = new DataView(bytes.buffer);
  logits.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return withHeader(header, 0, ActivationDtype.f32, bytes);
}

export function decodeLogits(payload: Uint8Array): { header: PassHeader; logits: Float32Array } {
  const { header, hidden, dtype, view } = readHeader(payload);
  const bytes = payload.byteLength - ACTIVATION_HEADER_BYTES;
  if (dtype !== ActivationDtype.f32 || hidden !== 0) throw bad(`a logits frame has dtype 2 and width 0, not ${dtype} and ${hidden}`);
  if (bytes === 0 || bytes % 4 !== 0) throw new AigridError('ERR_SHAPE_MISMATCH', `logits frame carries ${bytes} bytes`);
  const logits = Float32Array.from({ length: bytes / 4 }, (_, i) => view.getFloat32(ACTIVATION_HEADER_BYTES + i * 4, true));
  return { header, logits };
}

/** Parses and checks a forward/result payload; a bad one is ERR_FRAME_MALFORMED or ERR_SHAPE_MISMATCH. */
export function decodeActivation(payload: Uint8Array): { header: ActivationHeader; values: Uint8Array } {
  if (payload.byteLength < ACTIVATION_HEADER_BYTES) throw bad(`activation frame of ${payload.byteLength} bytes has no header`);
  const code = payload[20]!; // the dtype byte
  const dtype = code === ActivationDtype.f16 ? 'f16' : code === ActivationDtype.f32 ? 'f32' : null;
  if (!dtype) throw bad(`unknown activation dtype ${code}`);
  const read = readHeader(payload);
  const header: ActivationHeader = { ...read.header, hidden: read.hidden, dtype };
  const values = payload.subarray(ACTIVATION_HEADER_BYTES);
  const width = dtype === 'f16' ? 2 : 4;
  if (header.hidden === 0 || values.byteLength !== header.tokens * header.hidden * width) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `activation carries ${values.byteLength} bytes for [${header.tokens}, ${header.hidden}] ${dtype}`);
  }
  return { header, values };
}
