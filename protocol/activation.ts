// Activations between peers: data-channel frames (see frames.ts) whose payload starts with a
// fixed 32-byte header, then the values. Which frame carries what (session.ts has the frame types):
//   `forward` / `result`: T x H hidden states, f16 on the wire (f32 only when a value would
//     overflow f16, so nothing arrives as infinity); dtype 1 (f16) or 2 (f32).
//   `tokens`: T x u32 token ids into a stage that embeds; hidden = 1, dtype = 3 (u32).
//   `logits`: V x f32 logits of the request's last token from a stage that runs the head;
//     tokens = the request's T, hidden = 0 (a vocabulary does not fit the u16), dtype = 2 (f32, so
//     sampling sees the values unrounded).
//
// Header (little endian, 32 bytes):
//   0  u32 x2  session id (64 random bits; hex in JSON control frames)
//   8  u32     request id (chosen by the client, echoed in the result)
//   12 u32     start position of the first token
//   16 u16     tokens T
//   18 u16     hidden size H
//   20 u8      dtype (1 = f16, 2 = f32, 3 = u32 ids)
//   21 u8      hop index on the route (which hop this frame is addressed to)
//   22 u16     first layer of that hop
//   24 u16     end layer of that hop
//   26 u16     flags (none defined; 0)
//   28 u32     reserved (0)
import { z } from 'zod';
import { AigridError } from './errors.ts';
import { f16ToF32, f32ToF16 } from './f16.ts';

export const ACTIVATION_HEADER_BYTES = 32;

export const ActivationDtype = { f16: 1, f32: 2 } as const;
const U32_IDS = 3;
const SESSION_ID = /^[0-9a-f]{16}$/;

/** The fields of an activation header, with the ranges its binary layout gives them. */
const ActivationHeaderSchema = z.object({
  sessionId: z.string().regex(SESSION_ID),
  requestId: z.number().int().min(0).max(0xffffffff),
  startPos: z.number().int().min(0).max(0xffffffff),
  tokens: z.number().int().min(1).max(0xffff),
  hidden: z.number().int().min(0).max(0xffff),
  dtype: z.enum(['f16', 'f32']),
  hop: z.number().int().min(0).max(0xff),
  layerStart: z.number().int().min(0).max(0xffff),
  layerEnd: z.number().int().min(1).max(0xffff),
});

export type ActivationHeader = z.infer<typeof ActivationHeaderSchema>;

/** What a token-id or logits frame carries besides its values. */
export type PassHeader = Omit<ActivationHeader, 'hidden' | 'dtype'>;

/** Where the header fields other than the data's own (tokens, hidden size, dtype) come from. */
export type HiddenHeader = Omit<ActivationHeader, 'tokens' | 'hidden' | 'dtype'>;

export interface HiddenFrame {
  header: ActivationHeader;
  /** [tokens, hidden] as f32. */
  values: Float32Array;
}

/** Largest f16 value; a larger finite one would arrive as infinity. */
const F16_MAX = 65504;

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

/** Parses and checks a forward/result payload's header and raw values; a bad one is ERR_FRAME_MALFORMED or ERR_SHAPE_MISMATCH. */
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

/** The values as the wire will deliver them: rounded to f16 unless one would overflow it. */
export function wireRound(values: Float32Array): Float32Array {
  if (!fitsF16(values)) return values.slice();
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f16ToF32(f32ToF16(values[i]!));
  return out;
}

function fitsF16(values: Float32Array): boolean {
  for (let i = 0; i < values.length; i++) if (Math.abs(values[i]!) > F16_MAX) return false;
  return true;
}

/** A forward/result payload for rows [tokens, hidden] of f32 values. */
export function encodeHidden(header: HiddenHeader, values: Float32Array, tokens: number, hidden: number): Uint8Array {
  const f16 = fitsF16(values);
  const bytes = new Uint8Array(values.length * (f16 ? 2 : 4));
  const view = new DataView(bytes.buffer);
  if (f16) for (let i = 0; i < values.length; i++) view.setUint16(i * 2, f32ToF16(values[i]!), true);
  else for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i]!, true);
  return encodeActivation({ ...header, tokens, hidden, dtype: f16 ? 'f16' : 'f32' }, bytes);
}

/** Parses a forward/result payload; ERR_FRAME_MALFORMED, ERR_SHAPE_MISMATCH, or ERR_INVALID_ARGUMENT for non-finite values. */
export function decodeHidden(payload: Uint8Array): HiddenFrame {
  const { header, values: raw } = decodeActivation(payload);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const count = header.tokens * header.hidden;
  const values = new Float32Array(count);
  if (header.dtype === 'f16') for (let i = 0; i < count; i++) values[i] = f16ToF32(view.getUint16(i * 2, true));
  else for (let i = 0; i < count; i++) values[i] = view.getFloat32(i * 4, true);
  for (let i = 0; i < count; i++) {
    if (!Number.isFinite(values[i]!)) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `activation holds a non-finite value at row ${Math.floor(i / header.hidden)}, column ${i % header.hidden}`);
    }
  }
  return { header, values };
}

/** The session and request ids of an activation payload whose header may be otherwise bad. */
export function peekIds(payload: Uint8Array): { sessionId: string; requestId: number } | null {
  if (payload.byteLength < 12) return null;
  const view = new DataView(payload.buffer, payload.byteOffset, 12);
  const hex = (v: number) => v.toString(16).padStart(8, '0');
  return { sessionId: hex(view.getUint32(4, true)) + hex(view.getUint32(0, true)), requestId: view.getUint32(8, true) };
}
