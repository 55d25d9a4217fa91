import { describe, expect, it } from 'vitest';
import {
  AigridError,
  ERROR_CODES,
  FRAME_HEADER_BYTES,
  FrameReassembler,
  encodeFrame,
  packFrames,
  type Frame,
} from '../protocol/index.ts';
import { mulberry32, randomBytes } from './helpers/random.ts';

function reassemble(chunks: Uint8Array[], r = new FrameReassembler()): Frame[] {
  const out: Frame[] = [];
  for (const c of chunks) {
    const f = r.push(c);
    if (f) out.push(f);
  }
  return out;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AigridError);
    return (err as AigridError).code;
  }
  return 'no error';
}

describe('frame codec', () => {
  it('round-trips frames of seeded random sizes and chunk sizes, byte for byte', () => {
    const rand = mulberry32(7);
    for (let i = 0; i < 200; i++) {
      const size = i % 10 === 0 ? 0 : Math.floor(rand() * 300_000);
      const chunkBytes = FRAME_HEADER_BYTES + 1 + Math.floor(rand() * 70_000);
      const payload = randomBytes(rand, size);
      const type = 1 + Math.floor(rand() * 255);
      const chunks = encodeFrame(type, i, payload, chunkBytes);
      expect(chunks.every((c) => c.byteLength <= chunkBytes)).toBe(true);
      expect(chunks.length).toBe(Math.max(1, Math.ceil(size / (chunkBytes - FRAME_HEADER_BYTES))));
      const frames = reassemble(chunks);
      expect(frames).toHaveLength(1);
      expect(frames[0]!.type).toBe(type);
      expect(frames[0]!.id).toBe(i);
      expect(Buffer.from(frames[0]!.payload).equals(Buffer.from(payload))).toBe(true);
    }
  });

  it('decodes many frames back to back on one stream', () => {
    const rand = mulberry32(3);
    const r = new FrameReassembler();
    const sent = Array.from({ length: 50 }, (_, i) => randomBytes(rand, Math.floor(rand() * 5000)));
    const chunks = sent.flatMap((p, i) => encodeFrame(16, i, p, 1024));
    const got = reassemble(chunks, r);
    expect(got.map((f) => Buffer.from(f.payload).toString('hex'))).toEqual(sent.map((p) => Buffer.from(p).toString('hex')));
    expect(r.pending).toBe(false);
  });

  it('rejects bad arguments with named errors', () => {
    expect(codeOf(() => encodeFrame(0, 1, new Uint8Array(1), 1024))).toBe('ERR_INVALID_ARGUMENT');
    expect(codeOf(() => encodeFrame(256, 1, new Uint8Array(1), 1024))).toBe('ERR_INVALID_ARGUMENT');
    expect(codeOf(() => encodeFrame(16, 1, new Uint8Array(1), FRAME_HEADER_BYTES))).toBe('ERR_INVALID_ARGUMENT');
  });

  it('names each kind of malformed chunk and recovers for the next frame', () => {
    const r = new FrameReassembler(1000);
    const good = encodeFrame(16, 1, new Uint8Array([1, 2, 3]), 64)[0]!;
    const badMagic = good.slice();
    badMagic[0] = 0;
    const zeroType = good.slice();
    zeroType[1] = 0;
    const flags = good.slice();
    flags[2] = 2;
    const packedFlag = good.slice();
    packedFlag[2] = 1; // PACKED is for pushMessage; push takes plain chunks only
    const huge = encodeFrame(16, 2, new Uint8Array(2000), 4096)[0]!;
    const overrun = good.slice();
    new DataView(overrun.buffer).setUint32(8, 2, true);
    expect(codeOf(() => r.push(new Uint8Array(5)))).toBe('ERR_FRAME_MALFORMED');
    expect(codeOf(() => r.push(badMagic))).toBe('ERR_FRAME_MALFORMED');
    expect(codeOf(() => r.push(zeroType))).toBe('ERR_FRAME_MALFORMED');
    expect(codeOf(() => r.push(flags))).toBe('ERR_FRAME_MALFORMED');
    expect(codeOf(() => r.push(packedFlag))).toBe('ERR_FRAME_MALFORMED');
    expect(codeOf(() => r.push(huge))).toBe('ERR_FRAME_TOO_LARGE');
    expect(codeOf(() => r.push(overrun))).toBe('ERR_FRAME_OVERRUN');
    const [first] = encodeFrame(16, 3, new Uint8Array(100), 40);
    r.push(first!);
    expect(codeOf(() => r.push(good))).toBe('ERR_FRAME_INTERLEAVED');
    expect(r.push(good)?.payload).toEqual(new Uint8Array([1, 2, 3]));
  });

  it('never throws anything but a named error on seeded random and mutated chunks', () => {
    const rand = mulberry32(2024);
    const r = new FrameReassembler(1 << 20);
    let frames = 0;
    let errors = 0;
    for (let i = 0; i < 20_000; i++) {
      const base = encodeFrame(1 + Math.floor(rand() * 255), i, randomBytes(rand, Math.floor(rand() * 200)), 64);
      let chunk: Uint8Array = base[Math.floor(rand() * base.length)]!.slice();
      const mutation = Math.floor(rand() * 4);
      if (mutation === 0) chunk[Math.floor(rand() * chunk.length)] = Math.floor(rand() * 256);
      else if (mutation === 1) chunk = chunk.subarray(0, Math.floor(rand() * chunk.length));
      else if (mutation === 2) chunk = randomBytes(rand, Math.floor(rand() * 40));
      const code = codeOf(() => r.push(chunk) && frames++);
      if (code !== 'no error') {
        expect(ERROR_CODES).toContain(code);
        errors++;
      }
    }
    expect(frames).toBeGreaterThan(100);
    expect(errors).toBeGreaterThan(100);
  });

  it('carries whole frames packed into one message, in order, and names a bad part after the good ones', () => {
    const r = new FrameReassembler(1000);
    const frames = [encodeFrame(16, 1, new Uint8Array([1, 2]), 64)[0]!, encodeFrame(3, 2, new Uint8Array(0), 64)[0]!, encodeFrame(17, 3, new Uint8Array(40).fill(7), 64)[0]!];
    const packed = packFrames(frames);
    expect(packed.byteLength).toBe(frames.reduce((n, f) => n + f.byteLength, 0));
    const got: Frame[] = [];
    r.pushMessage(packed, (f) => got.push(f));
    expect(got.map((f) => [f.type, f.id, f.payload.byteLength])).toEqual([[16, 1, 2], [3, 2, 0], [17, 3, 40]]);
    expect(got[2]!.payload.every((b) => b === 7)).toBe(true);
    // A plain chunk through pushMessage is one frame, as with push.
    got.length = 0;
    r.pushMessage(frames[0]!, (f) => got.push(f));
    expect(got).toHaveLength(1);

    // Only whole frames pack.
    const [part] = encodeFrame(16, 4, new Uint8Array(100), 40);
    expect(codeOf(() => packFrames([frames[0]!, part!]))).toBe('ERR_INVALID_ARGUMENT');
    // Cut short: the frames before the cut are handed on, then the error is named.
    got.length = 0;
    expect(codeOf(() => r.pushMessage(packed.subarray(0, packed.byteLength - 5), (f) => got.push(f)))).toBe('ERR_FRAME_MALFORMED');
    expect(got).toHaveLength(2);
    // A plain chunk inside a packed message, a packed message inside a chunked frame.
    const mixed = packed.slice();
    mixed[frames[0]!.byteLength + 2] = 0;
    expect(codeOf(() => r.pushMessage(mixed, () => {}))).toBe('ERR_FRAME_MALFORMED');
    r.push(part!);
    expect(codeOf(() => r.pushMessage(packed, () => {}))).toBe('ERR_FRAME_INTERLEAVED');
    // Recovers for the next message.
    got.length = 0;
    r.pushMessage(packed, (f) => got.push(f));
    expect(got).toHaveLength(3);
  });

  it('never throws anything but a named error on seeded random and mutated packed messages', () => {
    const rand = mulberry32(77);
    const r = new FrameReassembler(1 << 20);
    let frames = 0;
    let errors = 0;
    for (let i = 0; i < 5_000; i++) {
      const parts = Array.from({ length: 1 + Math.floor(rand() * 4) }, (_, j) => encodeFrame(1 + Math.floor(rand() * 255), i * 8 + j, randomBytes(rand, Math.floor(rand() * 60)), 256)[0]!);
      let message: Uint8Array = packFrames(parts);
      const mutation = Math.floor(rand() * 3);
      if (mutation === 0) message[Math.floor(rand() * message.length)] = Math.floor(rand() * 256);
      else if (mutation === 1) message = message.subarray(0, Math.floor(rand() * message.length));
      const code = codeOf(() => r.pushMessage(message, () => frames++));
      if (code !== 'no error') {
        expect(ERROR_CODES).toContain(code);
        errors++;
      }
    }
    expect(frames).toBeGreaterThan(1000);
    expect(errors).toBeGreaterThan(100);
  });
});
