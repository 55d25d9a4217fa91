// Hidden states between peers: data-channel frames (see frames.ts) whose payload starts with a
// fixed 32-byte header, then T x H values (f16 on the wire). Control frames of a session (route
// set-up, release, failure) carry JSON instead.
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
} as const;

export const ActivationDtype = { f16: 1, f32: 2 } as const;

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
}

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
  const out = new Uint8Array(ACTIVATION_HEADER_BYTES + values.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, Number.parseInt(header.sessionId.slice(8), 16), true);
  view.setUint32(4, Number.parseInt(header.sessionId.slice(0, 8), 16), true);
  view.setUint32(8, header.requestId >>> 0, true);
  view.setUint32(12, header.startPos >>> 0, true);
  view.setUint16(16, header.tokens, true);
  view.setUint16(18, header.hidden, true);
  view.setUint8(20, ActivationDtype[header.dtype]);
  view.setUint8(21, header.hop);
  view.setUint16(22, header.layerStart, true);
  view.setUint16(24, header.layerEnd, true);
  out.set(values, ACTIVATION_HEADER_BYTES);
  return out;
}

/** Parses and checks a forward/result payload; a bad one is ERR_FRAME_MALFORMED or ERR_SHAPE_MISMATCH. */
export function decodeActivation(payload: Uint8Array): { header: ActivationHeader; values: Uint8Array } {
  if (payload.byteLength < ACTIVATION_HEADER_BYTES) throw bad(`activation frame of ${payload.byteLength} bytes has no header`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const code = view.getUint8(20);
  const dtype = code === ActivationDtype.f16 ? 'f16' : code === ActivationDtype.f32 ? 'f32' : null;
  if (!dtype) throw bad(`unknown activation dtype ${code}`);
  if (view.getUint16(26, true) !== 0 || view.getUint32(28, true) !== 0) throw bad('unknown activation flags');
  const hex = (v: number) => v.toString(16).padStart(8, '0');
  const header: ActivationHeader = {
    sessionId: hex(view.getUint32(4, true)) + hex(view.getUint32(0, true)),
    requestId: view.getUint32(8, true),
    startPos: view.getUint32(12, true),
    tokens: view.getUint16(16, true),
    hidden: view.getUint16(18, true),
    dtype,
    hop: view.getUint8(21),
    layerStart: view.getUint16(22, true),
    layerEnd: view.getUint16(24, true),
  };
  const values = payload.subarray(ACTIVATION_HEADER_BYTES);
  const width = dtype === 'f16' ? 2 : 4;
  if (header.tokens === 0 || header.hidden === 0 || values.byteLength !== header.tokens * header.hidden * width) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `activation carries ${values.byteLength} bytes for [${header.tokens}, ${header.hidden}] ${dtype}`);
  }
  if (header.layerEnd <= header.layerStart) throw bad(`empty layer range [${header.layerStart}, ${header.layerEnd})`);
  return { header, values };
}
