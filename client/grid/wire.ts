// What serving frames carry: hidden states as f16 (f32 only when a value would overflow f16), and
// the JSON control frames of a session (setup, failure, release), validated on arrival.
import { z } from 'zod';
import {
  AigridError,
  decodeActivation,
  encodeActivation,
  HopSchema,
  ModelIdSchema,
  PeerIdSchema,
  type ActivationHeader,
  type SessionFailure,
  type SessionSetup,
} from '../../protocol/index.ts';
import { f16ToF32, f32ToF16 } from '../../kernels/quant.ts';

/** Largest f16 value; a larger finite one would arrive as infinity. */
const F16_MAX = 65504;
const MAX_CONTROL_BYTES = 64 * 1024;
const SessionIdSchema = z.string().regex(/^[0-9a-f]{16}$/, 'sessionId: 16 hex digits');

export const SessionSetupSchema = z.object({
  sessionId: SessionIdSchema,
  modelId: ModelIdSchema,
  // The hop index travels in a u8 of the activation header.
  hops: z.array(HopSchema).min(1).max(255),
  client: PeerIdSchema,
  // Absent for the default mode, so setups of the two modes never compare equal by accident.
  light: z.literal(true).optional(),
});

/** A failure report; `blame` names the peer the reporting hop holds at fault when that is not itself. */
export const GridFailureSchema = z.object({
  sessionId: SessionIdSchema,
  requestId: z.number().int().nonnegative(),
  peerId: PeerIdSchema,
  code: z.string().max(64),
  message: z.string().max(1024),
  blame: PeerIdSchema.optional(),
});

export const ReleaseSchema = z.object({ sessionId: SessionIdSchema });

export type GridFailure = SessionFailure & { blame?: string };
export type Release = z.infer<typeof ReleaseSchema>;

/** Where the header fields other than the data's own (tokens, hidden size, dtype) come from. */
export type HiddenHeader = Omit<ActivationHeader, 'tokens' | 'hidden' | 'dtype'>;

export interface HiddenFrame {
  header: ActivationHeader;
  /** [tokens, hidden] as f32. */
  values: Float32Array;
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

export function encodeJson(value: SessionSetup | GridFailure | Release): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/** A control frame's JSON checked against its schema; ERR_FRAME_MALFORMED otherwise. */
export function decodeJson<T>(schema: z.ZodType<T>, payload: Uint8Array, what: string): T {
  if (payload.byteLength > MAX_CONTROL_BYTES) throw new AigridError('ERR_FRAME_MALFORMED', `${what} frame of ${payload.byteLength} bytes is too large`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    throw new AigridError('ERR_FRAME_MALFORMED', `${what} frame is not UTF-8 JSON`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AigridError('ERR_FRAME_MALFORMED', `${what} frame: ${issue?.path.join('.') || 'value'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/** ERR_INVALID_ARGUMENT unless the hops are contiguous, non-empty layer ranges. */
export function checkRoute(hops: readonly { peerId: string; start: number; end: number }[], start?: number, end?: number): void {
  const fail = (why: string) => new AigridError('ERR_INVALID_ARGUMENT', `route ${describeRoute(hops)}: ${why}`);
  if (hops.length === 0) throw fail('no hops');
  for (const [i, hop] of hops.entries()) {
    if (hop.end <= hop.start) throw fail(`hop ${i} has an empty range`);
    if (i > 0 && hop.start !== hops[i - 1]!.end) throw fail(`hop ${i} starts at ${hop.start}, not where hop ${i - 1} ends`);
  }
  if (start !== undefined && hops[0]!.start !== start) throw fail(`starts at layer ${hops[0]!.start}, not ${start}`);
  if (end !== undefined && hops.at(-1)!.end !== end) throw fail(`ends at layer ${hops.at(-1)!.end}, not ${end}`);
}

/** Two setups name the same session on the same route for the same client. */
export function sameSetup(a: SessionSetup, b: SessionSetup): boolean {
  return (
    a.sessionId === b.sessionId &&
    a.modelId === b.modelId &&
    a.client === b.client &&
    a.light === b.light &&
    a.hops.length === b.hops.length &&
    a.hops.every((h, i) => h.peerId === b.hops[i]!.peerId && h.start === b.hops[i]!.start && h.end === b.hops[i]!.end)
  );
}

export function describeRoute(hops: readonly { peerId: string; start: number; end: number }[]): string {
  return hops.map((h) => `${h.peerId}[${h.start},${h.end})`).join(' -> ');
}

/** An error's stable code, for failure frames. */
export function errorCode(err: unknown): string {
  return err instanceof AigridError ? err.code : 'ERR_INVALID_ARGUMENT';
}

export function errorMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 1024);
}
