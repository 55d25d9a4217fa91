// Binary frames on WebRTC data channels: a 12-byte header tagged with a type number, then payload.
// A frame larger than one channel message is split into chunks that each carry the same header;
// channels are ordered and reliable, so chunks of one frame arrive contiguous and in order.
// Several small whole frames may travel as one channel message (packFrames), each flagged PACKED:
// a data-channel send costs far more than its bytes (a blocking call into the WebRTC thread in
// Node), so the decode steps of a batch leave a peer as one message.
//
// Header (little endian):
//   0  u8  magic (FRAME_MAGIC: frame format version)
//   1  u8  frame type (FrameType; 0 is invalid)
//   2  u8  flags (FRAME_FLAG_PACKED or 0; other bits are refused)
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

/** Header flag: the frame is whole and shares its channel message with others (packFrames). */
export const FRAME_FLAG_PACKED = 0x01;

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

/** True when `chunk` (from encodeFrame) is a whole frame, which packFrames can take. */
function isWholeFrame(chunk: Uint8Array): boolean {
  return chunk.byteLength >= FRAME_HEADER_BYTES && new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength).getUint32(8, true) === chunk.byteLength - FRAME_HEADER_BYTES;
}

/** One channel message carrying whole frames back to back, each flagged PACKED. */
export function packFrames(frames: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(frames.reduce((n, f) => n + f.byteLength, 0));
  let at = 0;
  for (const f of frames) {
    if (!isWholeFrame(f)) throw new AigridError('ERR_INVALID_ARGUMENT', 'packFrames takes whole frames only');
    out.set(f, at);
    out[at + 2] = FRAME_FLAG_PACKED;
    at += f.byteLength;
  }
  return out;
}

interface Partial {
  type: number;
  id: number;
  /** The frame's declared length; `payload` grows towards it as chunks arrive. */
  total: number;
  payload: Uint8Array;
  filled: number;
}

/**
 * Rebuilds frames from channel messages. push() returns a whole frame, or null while one is
 * incomplete, and throws a named AigridError on bad input; after an error it starts afresh, so
 * one bad frame never poisons the ones after it. A link holds at most one partial frame, and its
 * buffer grows with the bytes received (doubling, up to the declared length), so a header that
 * announces a large frame costs nothing until its bytes arrive.
 */
export class FrameReassembler {
  private partial: Partial | null = null;

  constructor(readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** True while a frame is half received. */
  get pending(): boolean {
    return this.partial !== null;
  }

  /** Bytes held for the frame half received (0 when none). */
  get heldBytes(): number {
    return this.partial?.payload.byteLength ?? 0;
  }

  push(message: Uint8Array): Frame | null {
    try {
      return this.accept(message, false);
    } catch (err) {
      this.partial = null;
      throw err;
    }
  }

  /**
   * Hands every frame one channel message completes to `onFrame`, in order: none or one for a
   * chunk, several for a packed message. Throws like push() at the first bad part; the frames
   * before it have been handed on.
   */
  pushMessage(message: Uint8Array, onFrame: (frame: Frame) => void): void {
    if (message.byteLength < FRAME_HEADER_BYTES || message[2] !== FRAME_FLAG_PACKED) {
      const frame = this.push(message);
      if (frame) onFrame(frame);
      return;
    }
    try {
      for (let at = 0; at < message.byteLength; ) {
        const rest = message.subarray(at);
        if (rest.byteLength < FRAME_HEADER_BYTES) {
          throw new AigridError('ERR_FRAME_MALFORMED', `packed message ends in ${rest.byteLength} bytes, shorter than a header`);
        }
        const total = new DataView(rest.buffer, rest.byteOffset, rest.byteLength).getUint32(8, true);
        if (total > rest.byteLength - FRAME_HEADER_BYTES) {
          throw new AigridError('ERR_FRAME_MALFORMED', `packed frame of ${total} bytes runs past its message`);
        }
        onFrame(this.accept(rest.subarray(0, FRAME_HEADER_BYTES + total), true)!);
        at += FRAME_HEADER_BYTES + total;
      }
    } catch (err) {
      this.partial = null;
      throw err;
    }
  }

  /** One chunk; `packed`: a whole frame from a packed message. */
  private accept(message: Uint8Array, packed: boolean): Frame | null {
    if (message.byteLength < FRAME_HEADER_BYTES) {
      throw new AigridError('ERR_FRAME_MALFORMED', `chunk of ${message.byteLength} bytes is shorter than the header`);
    }
    const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
    const magic = message[0]!;
    const type = message[1]!;
    if (magic !== FRAME_MAGIC) throw new AigridError('ERR_FRAME_MALFORMED', `bad magic 0x${magic.toString(16)}`);
    if (type === 0) throw new AigridError('ERR_FRAME_MALFORMED', 'frame type 0 is invalid');
    if (message[2] !== (packed ? FRAME_FLAG_PACKED : 0) || message[3] !== 0) {
      throw new AigridError('ERR_FRAME_MALFORMED', 'unknown flags or reserved bits set');
    }
    if (packed && this.partial) {
      throw new AigridError('ERR_FRAME_INTERLEAVED', `a packed frame arrived inside frame ${this.partial.id}`);
    }
    const id = view.getUint32(4, true);
    const total = view.getUint32(8, true);
    const body = message.subarray(FRAME_HEADER_BYTES);
    if (total > this.maxFrameBytes) {
      throw new AigridError('ERR_FRAME_TOO_LARGE', `frame of ${total} bytes exceeds ${this.maxFrameBytes}`);
    }
    let partial = this.partial;
    if (partial && (partial.id !== id || partial.type !== type || partial.total !== total)) {
      throw new AigridError('ERR_FRAME_INTERLEAVED', `chunk of frame ${id} arrived inside frame ${partial.id}`);
    }
    if (!partial) {
      partial = { type, id, total, payload: new Uint8Array(Math.min(total, body.byteLength)), filled: 0 };
      this.partial = partial;
    }
    if (body.byteLength > total - partial.filled) {
      throw new AigridError('ERR_FRAME_OVERRUN', `frame ${id} carries more than its ${total} bytes`);
    }
    if (body.byteLength === 0 && total > 0) {
      throw new AigridError('ERR_FRAME_MALFORMED', `empty chunk in frame ${id}`);
    }
    const need = partial.filled + body.byteLength;
    if (need > partial.payload.byteLength) {
      const grown = new Uint8Array(Math.min(total, Math.max(need, partial.payload.byteLength * 2)));
      grown.set(partial.payload.subarray(0, partial.filled));
      partial.payload = grown;
    }
    partial.payload.set(body, partial.filled);
    partial.filled += body.byteLength;
    if (partial.filled < total) return null;
    this.partial = null;
    return { type, id, payload: partial.payload }; // filled === total === its length
  }
}
