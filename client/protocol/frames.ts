// Binary frames on WebRTC data channels: a 12-byte header tagged with a type number, then payload.
// A frame larger than one channel message is split into chunks that each carry the same header;
// channels are ordered and reliable, so chunks of one frame arrive contiguous and in order.
//
// Header (little endian):
//   0  u8  magic (FRAME_MAGIC: frame format version)
//   1  u8  frame type (FrameType; 0 is invalid)
//   2  u8  flags (none defined yet; must be 0)
//   3  u8  reserved (0)
//   4  u32 frame id (per sender, wraps)
//   8  u32 payload length of the whole frame
import { AigridError } from './errors.ts';
import { DEFAULT_MAX_FRAME_BYTES } from './limits.ts';

export const FRAME_MAGIC = 0xa1;
export const FRAME_HEADER_BYTES = 12;

/** Type numbers of data-channel frames. New kinds of traffic take new numbers here. */
export const FrameType = {
  /** Round-trip probe; the receiver answers with pong carrying the same payload. */
  ping: 1,
  pong: 2,
  /** A JSON {code, message} telling the peer that one of its frames was refused. */
  error: 3,
  /** Application bytes with no further structure (tests, benchmarks, tools). */
  data: 16,
} as const;

export type FrameTypeNumber = number;

export interface Frame {
  type: FrameTypeNumber;
  id: number;
  payload: Uint8Array;
}

function assertType(type: number): void {
  if (!Number.isInteger(type) || type < 1 || type > 255) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `frame type must be an integer in 1..255, got ${type}`);
  }
}

/** Splits one frame into channel messages of at most chunkBytes bytes each (header included). */
export function encodeFrame(type: number, id: number, payload: Uint8Array, chunkBytes: number): Uint8Array[] {
  assertType(type);
  if (!Number.isInteger(chunkBytes) || chunkBytes <= FRAME_HEADER_BYTES) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `chunkBytes must exceed the ${FRAME_HEADER_BYTES}-byte header`);
  }
  if (payload.byteLength > 0xffffffff) {
    throw new AigridError('ERR_FRAME_TOO_LARGE', `payload of ${payload.byteLength} bytes exceeds 4 GiB`);
  }
  const room = chunkBytes - FRAME_HEADER_BYTES;
  const count = Math.max(1, Math.ceil(payload.byteLength / room));
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const part = payload.subarray(i * room, Math.min(payload.byteLength, (i + 1) * room));
    const chunk = new Uint8Array(FRAME_HEADER_BYTES + part.byteLength);
    const view = new DataView(chunk.buffer);
    chunk[0] = FRAME_MAGIC;
    chunk[1] = type;
    view.setUint32(4, id >>> 0, true);
    view.setUint32(8, payload.byteLength, true);
    chunk.set(part, FRAME_HEADER_BYTES);
    chunks.push(chunk);
  }
  return chunks;
}

interface Partial {
  type: number;
  id: number;
  payload: Uint8Array;
  filled: number;
}

/**
 * Rebuilds frames from channel messages. push() returns a whole frame, or null while one is
 * incomplete, and throws a named AigridError on bad input; after an error it starts afresh, so
 * one bad frame never poisons the ones after it.
 */
export class FrameReassembler {
  private partial: Partial | null = null;

  constructor(readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** True while a frame is half received. */
  get pending(): boolean {
    return this.partial !== null;
  }

  push(message: Uint8Array): Frame | null {
    try {
      return this.accept(message);
    } catch (err) {
      this.partial = null;
      throw err;
    }
  }

  private accept(message: Uint8Array): Frame | null {
    if (message.byteLength < FRAME_HEADER_BYTES) {
      throw new AigridError('ERR_FRAME_MALFORMED', `chunk of ${message.byteLength} bytes is shorter than the header`);
    }
    const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
    const magic = message[0]!;
    const type = message[1]!;
    if (magic !== FRAME_MAGIC) throw new AigridError('ERR_FRAME_MALFORMED', `bad magic 0x${magic.toString(16)}`);
    if (type === 0) throw new AigridError('ERR_FRAME_MALFORMED', 'frame type 0 is invalid');
    if (message[2] !== 0 || message[3] !== 0) {
      throw new AigridError('ERR_FRAME_MALFORMED', 'unknown flags or reserved bits set');
    }
    const id = view.getUint32(4, true);
    const total = view.getUint32(8, true);
    const body = message.subarray(FRAME_HEADER_BYTES);
    if (total > this.maxFrameBytes) {
      throw new AigridError('ERR_FRAME_TOO_LARGE', `frame of ${total} bytes exceeds ${this.maxFrameBytes}`);
    }
    let partial = this.partial;
    if (partial && (partial.id !== id || partial.type !== type || partial.payload.byteLength !== total)) {
      throw new AigridError('ERR_FRAME_INTERLEAVED', `chunk of frame ${id} arrived inside frame ${partial.id}`);
    }
    if (!partial) {
      partial = { type, id, payload: new Uint8Array(total), filled: 0 };
      this.partial = partial;
    }
    if (body.byteLength > total - partial.filled) {
      throw new AigridError('ERR_FRAME_OVERRUN', `frame ${id} carries more than its ${total} bytes`);
    }
    if (body.byteLength === 0 && total > 0) {
      throw new AigridError('ERR_FRAME_MALFORMED', `empty chunk in frame ${id}`);
    }
    partial.payload.set(body, partial.filled);
    partial.filled += body.byteLength;
    if (partial.filled < total) return null;
    this.partial = null;
    return { type, id, payload: partial.payload };
  }
}
