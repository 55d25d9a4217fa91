import { describe, expect, it } from 'vitest';
import {
  AigridError,
  ERROR_CODES,
  FRAME_HEADER_BYTES,
  FrameReassembler,
  encodeFrame,
  type Frame,
} from '../client/protocol/index.ts';
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
    flags[2] = 1;
    const huge = encodeFrame(16, 2, new Uint8Array(2000), 4096)[0]!;
    const overrun = good.slice();
    new DataView(overrun.buffer).setUint32(8, 2, true);
    expect(codeOf(() => r.push(new Uint8Array(5)))).toBe('ERR_FRAME_MALFORMED');
    expect(codeOf(() => r.push(badMagic))).toBe('ERR_FRAME_MALFORMED');
    expect(codeOf(() => r.push(zeroType))).toBe('ERR_FRAME_MALFORMED');
    expect(codeOf(() => r.push(flags))).toBe('ERR_FRAME_MALFORMED');
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
      try {
        if (r.push(chunk)) frames++;
      } catch (err) {
        expect(err).toBeInstanceOf(AigridError);
        expect(ERROR_CODES).toContain((err as AigridError).code);
        errors++;
      }
    }
    expect(frames).toBeGreaterThan(100);
    expect(errors).toBeGreaterThan(100);
  });
});
