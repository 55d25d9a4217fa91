// The GGML block formats: sizes, hand-built blocks decoded to known values (every packed field at a
// known byte and bit), the quantizers' bytes and error bounds on seeded data, and the errors.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  GGML_BLOCK, GGML_TYPE, dequantizeGgml, dequantizeGgmlRows, ggmlByteLength, ggmlTypeName, isSupportedGgmlType, q4kScaleMin,
  type GgmlType,
} from '../kernels/ggml-quants.ts';
import { f16ToF32, roundF16 } from '../kernels/quant.ts';
import { AigridError } from '../protocol/errors.ts';
import { quantizeGgml } from './fixtures/ggml-quantize.ts';
import { mulberry32, randomBytes } from './helpers/random.ts';

const ALL_TYPES = Object.values(GGML_TYPE) as GgmlType[];
const F16_ONE = [0x00, 0x3c];
const F16_HALF = [0x00, 0x38];

function expectError(run: () => unknown, code: string, words?: string): void {
  let caught: unknown;
  try { run(); } catch (err) { caught = err; }
  expect(caught).toBeInstanceOf(AigridError);
  expect((caught as AigridError).code).toBe(code);
  if (words) expect((caught as AigridError).message).toContain(words);
}

function uniform(seed: number, n: number): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rand() * 2 - 1);
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function f16At(bytes: Uint8Array, at: number): number {
  return f16ToF32(bytes[at]! | (bytes[at + 1]! << 8));
}

/** The same bytes at an odd byteOffset of a larger buffer. */
function atOddOffset(bytes: Uint8Array): Uint8Array {
  const buffer = new Uint8Array(bytes.length + 3);
  buffer.set(bytes, 1);
  return buffer.subarray(1, 1 + bytes.length);
}

describe('GGML formats: sizes and names', () => {
  it('has the block sizes of the file format', () => {
    expect(GGML_BLOCK).toEqual({
      0: { elements: 1, bytes: 4 }, 1: { elements: 1, bytes: 2 }, 30: { elements: 1, bytes: 2 },
      8: { elements: 32, bytes: 34 }, 2: { elements: 32, bytes: 18 }, 6: { elements: 32, bytes: 22 },
      12: { elements: 256, bytes: 144 }, 14: { elements: 256, bytes: 210 },
    });
    expect(ggmlByteLength(GGML_TYPE.F32, 3)).toBe(12);
    expect(ggmlByteLength(GGML_TYPE.F16, 3)).toBe(6);
    expect(ggmlByteLength(GGML_TYPE.BF16, 5)).toBe(10);
    expect(ggmlByteLength(GGML_TYPE.Q8_0, 64)).toBe(68);
    expect(ggmlByteLength(GGML_TYPE.Q4_0, 96)).toBe(54);
    expect(ggmlByteLength(GGML_TYPE.Q5_0, 576)).toBe(396); // one of SmolLM2-135M's 576-wide rows
    expect(ggmlByteLength(GGML_TYPE.Q4_K, 512)).toBe(288);
    expect(ggmlByteLength(GGML_TYPE.Q6_K, 768)).toBe(630);
    expect(ggmlByteLength(GGML_TYPE.Q6_K, 0)).toBe(0);
  });

  it('names the types it knows and only those', () => {
    expect(ALL_TYPES.map(ggmlTypeName)).toEqual(['F32', 'F16', 'Q4_0', 'Q5_0', 'Q8_0', 'Q4_K', 'Q6_K', 'BF16']);
    expect(ggmlTypeName(3)).toBe('type 3');
    for (const type of ALL_TYPES) expect(isSupportedGgmlType(type)).toBe(true);
    for (const type of [3, 7, 10, 13, 15, 31, -1, 1.5]) expect(isSupportedGgmlType(type)).toBe(false);
  });

  it('rejects partial blocks and unknown types with the named errors', () => {
    expectError(() => ggmlByteLength(GGML_TYPE.Q8_0, 33), 'ERR_SHAPE_MISMATCH', 'Q8_0');
    expectError(() => ggmlByteLength(GGML_TYPE.Q4_K, 128), 'ERR_SHAPE_MISMATCH', 'Q4_K');
    expectError(() => ggmlByteLength(GGML_TYPE.F32, -4), 'ERR_SHAPE_MISMATCH');
    expectError(() => ggmlByteLength(GGML_TYPE.F32, 2.5), 'ERR_SHAPE_MISMATCH');
    expectError(() => ggmlByteLength(11, 256), 'ERR_DTYPE_UNSUPPORTED', 'type 11');
    expectError(() => dequantizeGgml(7, new Uint8Array(24), 32), 'ERR_DTYPE_UNSUPPORTED', 'type 7');
    expectError(() => dequantizeGgml(GGML_TYPE.Q5_0, new Uint8Array(18), 32), 'ERR_SHAPE_MISMATCH', '22');
    expectError(() => dequantizeGgml(GGML_TYPE.Q4_0, new Uint8Array(17), 32), 'ERR_SHAPE_MISMATCH', '18');
    expectError(() => dequantizeGgml(GGML_TYPE.Q6_K, new Uint8Array(211), 256), 'ERR_SHAPE_MISMATCH');
    expectError(() => dequantizeGgml(GGML_TYPE.F16, new Uint8Array(8), 3), 'ERR_SHAPE_MISMATCH');
    expectError(() => dequantizeGgmlRows(GGML_TYPE.Q4_K, new Uint8Array(288), 2, 200), 'ERR_SHAPE_MISMATCH');
    expectError(() => quantizeGgml(GGML_TYPE.Q8_0, new Float32Array(33)), 'ERR_SHAPE_MISMATCH', 'Q8_0');
    expectError(() => quantizeGgml(GGML_TYPE.Q6_K, new Float32Array(255)), 'ERR_SHAPE_MISMATCH');
    expectError(() => quantizeGgml(7 as GgmlType, new Float32Array(32)), 'ERR_DTYPE_UNSUPPORTED', 'type 7');
  });
});

describe('GGML formats: hand-built blocks', () => {
  it('F32, F16 and BF16 are little-endian values', () => {
    const f32 = new Uint8Array(new Float32Array([1.5, -2, 3e-40]).buffer);
    expect(Array.from(dequantizeGgml(GGML_TYPE.F32, f32, 3))).toEqual([1.5, -2, Math.fround(3e-40)]);
    // 1, -2, the smallest subnormal, the largest finite half, -inf.
    const f16 = Uint8Array.from([0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0xff, 0x7b, 0x00, 0xfc]);
    expect(Array.from(dequantizeGgml(GGML_TYPE.F16, f16, 5))).toEqual([1, -2, 2 ** -24, 65504, -Infinity]);
    // 1, -3, the smallest bf16 subnormal (2^-133), 2^127 * 1.9921875.
    const bf16 = Uint8Array.from([0x80, 0x3f, 0x40, 0xc0, 0x01, 0x00, 0x7f, 0x7f]);
    expect(Array.from(dequantizeGgml(GGML_TYPE.BF16, bf16, 4))).toEqual([1, -3, 2 ** -133, 2 ** 127 * 1.9921875]);
  });

  it('Q8_0: f16 scale then 32 signed bytes', () => {
    const block = new Uint8Array(34);
    block.set(F16_HALF, 0);
    for (let j = 0; j < 32; j++) block[2 + j] = ((j - 16) * 8) & 0xff; // -128, -120, ..., 120
    const want = Array.from({ length: 32 }, (_, j) => (j - 16) * 4);
    expect(Array.from(dequantizeGgml(GGML_TYPE.Q8_0, block, 32))).toEqual(want);
  });

  it('Q4_0: low nibbles are elements 0..15, high nibbles 16..31, both offset by 8', () => {
    const block = new Uint8Array(18);
    block.set([0x00, 0x34], 0); // d = 0.25
    for (let j = 0; j < 16; j++) block[2 + j] = j | ((15 - j) << 4);
    const want = [
      ...Array.from({ length: 16 }, (_, j) => (j - 8) * 0.25),
      ...Array.from({ length: 16 }, (_, j) => (7 - j) * 0.25),
    ];
    expect(Array.from(dequantizeGgml(GGML_TYPE.Q4_0, block, 32))).toEqual(want);
  });

  it('Q5_0: qh bit j is the fifth bit of element j; nibbles as Q4_0; offset by 16', () => {
    const block = new Uint8Array(22);
    block.set(F16_HALF, 0);
    // qh = 0x80018001 little-endian: the high bits of elements 0, 15, 16 and 31.
    block.set([0x01, 0x80, 0x01, 0x80], 2);
    for (let j = 0; j < 16; j++) block[6 + j] = j | ((15 - j) << 4);
    const want = [
      ...Array.from({ length: 16 }, (_, j) => (j - 16) * 0.5),
      ...Array.from({ length: 16 }, (_, j) => (15 - j - 16) * 0.5),
    ];
    for (const e of [0, 15, 16, 31]) want[e]! += 8; // 16 * d
    expect(want.slice(0, 2)).toEqual([0, -7.5]);
    expect([want[15], want[16], want[31]]).toEqual([7.5, 7.5, 0]);
    expect(Array.from(dequantizeGgml(GGML_TYPE.Q5_0, block, 32))).toEqual(want);
  });

  it('Q5_0: every element reads its 5-bit code, extremes included', () => {
    const codes = Array.from({ length: 32 }, (_, e) => (e * 13 + 7) & 31);
    const block = new Uint8Array(22);
    block.set(F16_ONE, 0);
    let qh = 0;
    for (let e = 0; e < 32; e++) {
      block[6 + (e & 15)]! |= (codes[e]! & 15) << (e < 16 ? 0 : 4);
      qh |= (codes[e]! >> 4) << e;
    }
    new DataView(block.buffer).setUint32(2, qh >>> 0, true);
    expect(Array.from(dequantizeGgml(GGML_TYPE.Q5_0, block, 32))).toEqual(codes.map((q) => q - 16));
  });

  // Sub-block scales and mins, chosen so that sub-blocks 4..7 need the top two bits.
  const SC = [1, 2, 3, 4, 33, 45, 62, 63];
  const MN = [5, 6, 7, 8, 17, 30, 50, 63];
  // Packed by hand: bytes 0..3 = SC[0..3] | top bits of SC[4..7] << 6; bytes 4..7 = MN[0..3] | top bits
  // of MN[4..7] << 6; bytes 8..11 = low 4 bits of SC[4..7] | low 4 bits of MN[4..7] << 4.
  const PACKED = [0x81, 0x82, 0xc3, 0xc4, 0x45, 0x46, 0xc7, 0xc8, 0x11, 0xed, 0x2e, 0xff];

  it('Q4_K: 6-bit scales and mins of sub-blocks 0-3 and 4-7', () => {
    const scales = Uint8Array.from(PACKED);
    for (let s = 0; s < 8; s++) expect(q4kScaleMin(scales, 0, s)).toEqual([SC[s], MN[s]]);
  });

  it('Q4_K: nibble group g holds sub-block 2g low and 2g + 1 high; w = d sc q - dmin m', () => {
    const block = new Uint8Array(144);
    block.set(F16_ONE, 0); // d = 1
    block.set(F16_HALF, 2); // dmin = 0.5
    block.set(PACKED, 4);
    for (let i = 0; i < 128; i++) block[16 + i] = (i & 15) | ((15 - (i & 15)) << 4);
    const got = dequantizeGgml(GGML_TYPE.Q4_K, block, 256);
    for (let g = 0; g < 4; g++) {
      for (let l = 0; l < 32; l++) {
        expect(got[64 * g + l]).toBe(SC[2 * g]! * (l & 15) - 0.5 * MN[2 * g]!);
        expect(got[64 * g + 32 + l]).toBe(SC[2 * g + 1]! * (15 - (l & 15)) - 0.5 * MN[2 * g + 1]!);
      }
    }
  });

  it('Q6_K: ql and qh bits of each 32-element quarter of both halves, d at the end', () => {
    // Scale s + 1 for the 16 elements of sub-block s, d = 1; every code 0 (w = -32 scale) but a few.
    const block = new Uint8Array(210);
    for (let s = 0; s < 16; s++) block[192 + s] = s + 1;
    block.set(F16_ONE, 208);
    const set = (half: number, l: number, ql: number, ql32: number, qh: number): void => {
      block[64 * half + l] = ql;
      block[64 * half + 32 + l] = ql32;
      block[128 + 32 * half + l] = qh;
    };
    // Half 0, l = 20: ql[20] = elements 20 (low) and 84 (high), ql[52] = 52 (low) and 116 (high), qh[20]
    // bits 0-1 / 2-3 / 4-5 / 6-7 = top bits of 20 / 52 / 84 / 116.
    set(0, 20, 0x5a, 0xc3, 0b01_10_11_00);
    // Half 1, l = 5: elements 133, 165, 197, 229 in the same places of the second 64 + 32 bytes.
    set(1, 5, 0x9a, 0x3c, 0b10_01_11_00);
    const want = Array.from({ length: 256 }, (_, e) => ((e >> 4) + 1) * -32);
    const code = (e: number, q: number): void => { want[e] = ((e >> 4) + 1) * (q - 32); };
    code(20, 0xa | (0 << 4)); code(52, 0x3 | (3 << 4)); code(84, 0x5 | (2 << 4)); code(116, 0xc | (1 << 4));
    code(133, 0xa | (0 << 4)); code(165, 0xc | (3 << 4)); code(197, 0x9 | (1 << 4)); code(229, 0x3 | (2 << 4));
    expect(Array.from(dequantizeGgml(GGML_TYPE.Q6_K, block, 256))).toEqual(want);
  });

  it('Q6_K: every element reads the 6-bit code at its place, with signed scales', () => {
    const codes = Array.from({ length: 256 }, (_, e) => (e * 37 + 11) & 63);
    const block = new Uint8Array(210);
    for (let e = 0; e < 256; e++) {
      const half = e >> 7, quarter = (e >> 5) & 3, l = e & 31;
      const ql = 64 * half + 32 * (quarter & 1) + l; // quarters 0, 2 share ql[l]; 1, 3 share ql[l + 32]
      block[ql]! |= (codes[e]! & 15) << (quarter < 2 ? 0 : 4);
      block[128 + 32 * half + l]! |= (codes[e]! >> 4) << (2 * quarter);
    }
    const scales = [3, -5, 7, -9, 11, -13, 15, -17, 127, -128, 1, -1, 2, -2, 0, 64];
    scales.forEach((s, i) => { block[192 + i] = s & 0xff; });
    block.set(F16_HALF, 208);
    const want = codes.map((q, e) => 0.5 * scales[e >> 4]! * (q - 32));
    expect(Array.from(dequantizeGgml(GGML_TYPE.Q6_K, block, 256))).toEqual(want);
  });

  // SHA-256 of the f32 bits the reference decoders give for 16 random blocks (scales kept finite).
  const DECODED: [GgmlType, string][] = [
    [GGML_TYPE.Q8_0, '5556a1f21527366b0d64f1fcdda2850767babce8c5dee3b52829f4006b0a0335'],
    [GGML_TYPE.Q4_0, 'cdd32e6cd29de9b6d879048baaac4bdca69b9eb1fccd0b5a23ab9fb4b215b43f'],
    [GGML_TYPE.Q5_0, '5cf06af6e7f4ff9b0578ef15a7abed9fdad0faf0c83b2a6720e3be9822f65ff2'],
    [GGML_TYPE.Q4_K, 'ca87497030b9dfa9930f1bef0580b02a13af6fdf3011af039d88ba0db97e38c5'],
    [GGML_TYPE.Q6_K, 'db1f42c449c5cbda256fee5c117f631bd532dcd9c57241709a1e939ebdf321d6'],
  ];

  it('decodes random blocks to the reference bits', () => {
    for (const [type, digest] of DECODED) {
      const { elements, bytes: size } = GGML_BLOCK[type];
      const bytes = randomBytes(mulberry32(type), 16 * size);
      // Clear the top exponent bit of every f16 scale: no inf or NaN, subnormals kept.
      const scaleAt = type === GGML_TYPE.Q6_K ? [208] : type === GGML_TYPE.Q4_K ? [0, 2] : [0];
      for (let b = 0; b < 16; b++) for (const at of scaleAt) bytes[b * size + at + 1]! &= 0xbf;
      const values = dequantizeGgml(type, bytes, 16 * elements);
      expect([ggmlTypeName(type), sha256(new Uint8Array(values.buffer))]).toEqual([ggmlTypeName(type), digest]);
    }
  });

  it('blocks of zero bytes decode to zeros', () => {
    for (const type of ALL_TYPES) {
      const n = GGML_BLOCK[type].elements * 2;
      const got = dequantizeGgml(type, new Uint8Array(ggmlByteLength(type, n)), n);
      expect(got.length).toBe(n);
      expect(got.every((v) => v === 0)).toBe(true);
    }
  });

  it('decodes bytes at an odd byteOffset the same as aligned bytes', () => {
    for (const type of ALL_TYPES) {
      const n = GGML_BLOCK[type].elements * 3;
      const bytes = quantizeGgml(type, uniform(type + 1, n));
      const odd = atOddOffset(bytes);
      expect(odd.byteOffset % 2).toBe(1);
      expect(dequantizeGgml(type, odd, n)).toEqual(dequantizeGgml(type, bytes, n));
    }
  });

  it('decodes rows as one run of blocks', () => {
    const bytes = quantizeGgml(GGML_TYPE.Q4_0, uniform(9, 3 * 64));
    expect(dequantizeGgmlRows(GGML_TYPE.Q4_0, bytes, 3, 64)).toEqual(dequantizeGgml(GGML_TYPE.Q4_0, bytes, 192));
  });
});

describe('GGML formats: quantizers', () => {
  // Twenty 256-element blocks cycling through: plain; with outliers; all positive far from zero; small
  // values after a sub-block of zeros; and a block whose first sub-blocks are 1e-4 of the rest (their
  // scales round to 0) next to a block of 1e-14 values (too small for any Q6_K scale: stored as zeros).
  function goldenInput(): Float32Array {
    const rand = mulberry32(1);
    return Float32Array.from({ length: 5120 }, (_, i) => {
      const u = rand() * 2 - 1;
      switch ((i >> 8) % 5) {
        case 0: return u;
        case 1: return i % 37 === 0 ? 12 * u : u;
        case 2: return 3 + 0.05 * u;
        case 3: return (i & 255) < 32 ? 0 : 1e-3 * u;
        default: return i & 512 ? 1e-14 * u : (i & 255) < 32 ? 1e-4 * u : u;
      }
    });
  }

  // SHA-256 of the bytes the GGML reference quantizers write for goldenInput() when built without fused
  // multiply-add: these pin the fixture to them, decision for decision.
  const GOLDEN: Record<GgmlType, string> = {
    [GGML_TYPE.F32]: '6f33ff4c4f3ee291ce4d1d5ee43c906c40d3bafbd8db06c2633265f37688a59a',
    [GGML_TYPE.F16]: 'fc872788825f1ba69743f962a645155964f7f0186277b85572bfa848bfaa54fd',
    [GGML_TYPE.BF16]: '25ce550498f3c19aae7a966fb4a4c1d469da9ca7493a2d6d4ea6d3eeea2b4995',
    [GGML_TYPE.Q8_0]: 'e5f8ab48409a76d06311cfddeafe942554412e78b37b617e1ada110654de4672',
    [GGML_TYPE.Q4_0]: '087ba803c11468e9191c0f40ed9763ca3735600f3c0eb5708b2c074a72dcfa9f',
    [GGML_TYPE.Q5_0]: 'cf296697987aa7baf704670a950285fc7a01fdabd6c037b0414c469f6e52db6f',
    [GGML_TYPE.Q4_K]: '2131f807bcb317384f90fb8e328413174d5157f983e690afb4481659b908b8d5',
    [GGML_TYPE.Q6_K]: 'da1b6b4d3df5282445de235e0361d7ad00c2d8f5896e6f3c718f2eb0741a5242',
  };

  it('writes the reference bytes for a mixed input', () => {
    const x = goldenInput();
    for (const type of ALL_TYPES) {
      const bytes = quantizeGgml(type, x);
      expect(bytes.length).toBe(ggmlByteLength(type, x.length));
      expect([ggmlTypeName(type), sha256(bytes)]).toEqual([ggmlTypeName(type), GOLDEN[type]]);
    }
  });

  it('Q8_0 rounds halves away from zero against the unrounded scale', () => {
    const x = new Float32Array(32);
    x.set([-127, -2.5, 2.5, 0.5, -0.5, 1.5, 126.4]); // amax 127: d = 1 exactly
    const bytes = quantizeGgml(GGML_TYPE.Q8_0, x);
    expect([...bytes.subarray(0, 2)]).toEqual(F16_ONE);
    expect([...new Int8Array(bytes.buffer, 2, 8)]).toEqual([-127, -3, 3, 1, -1, 2, 126, 0]);
  });

  it('Q4_0 maps the signed extreme to level -8 and rounds other halves up', () => {
    const x = new Float32Array(32);
    x.set([-8, 7.5, 0.5, -0.5, 3.2]); // max is -8: d = 1, so x + 8 is the nibble before clamping
    x[16] = 7.49;
    const bytes = quantizeGgml(GGML_TYPE.Q4_0, x);
    expect([...bytes.subarray(0, 2)]).toEqual(F16_ONE);
    const low = [...bytes.subarray(2)].map((b) => b & 15);
    expect(low.slice(0, 6)).toEqual([0, 15, 9, 8, 11, 8]);
    expect(bytes[2]! >> 4).toBe(15);
  });

  it('writes an all-zero input as zero scales', () => {
    for (const type of ALL_TYPES) {
      const n = GGML_BLOCK[type].elements;
      const bytes = quantizeGgml(type, new Float32Array(n));
      // Q4_0 and Q5_0 divide the zero maximum by -8 / -16: the scale is -0 (0x8000) and every code
      // the middle level, 8 (nibbles 0x88) / 16 (nibble 0, every qh bit set).
      const want = type === GGML_TYPE.Q4_0 ? [0x00, 0x80, ...new Array(16).fill(0x88)]
        : type === GGML_TYPE.Q5_0 ? [0x00, 0x80, 0xff, 0xff, 0xff, 0xff, ...new Array(16).fill(0)]
        : new Array(bytes.length).fill(0);
      expect([ggmlTypeName(type), ...bytes]).toEqual([ggmlTypeName(type), ...want]);
      expect(dequantizeGgml(type, bytes, n).every((v) => v === 0)).toBe(true);
    }
  });

  it('F32 is exact; F16 and BF16 round to nearest even', () => {
    const x = uniform(1, 512).map((v, i) => v * 2 ** ((i % 30) - 20)); // f16 subnormals to 2^9
    expect(dequantizeGgml(GGML_TYPE.F32, quantizeGgml(GGML_TYPE.F32, x), 512)).toEqual(x);
    expect(dequantizeGgml(GGML_TYPE.F16, quantizeGgml(GGML_TYPE.F16, x), 512)).toEqual(x.map(roundF16));
    const bf16 = dequantizeGgml(GGML_TYPE.BF16, quantizeGgml(GGML_TYPE.BF16, x), 512);
    for (let i = 0; i < x.length; i++) expect(Math.abs(bf16[i]! - x[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -8);
    // Ties go to the even neighbour: 1 + 2^-8 sits halfway between 1 and 1 + 2^-7.
    const ties = Float32Array.from([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8)]);
    expect(Array.from(dequantizeGgml(GGML_TYPE.BF16, quantizeGgml(GGML_TYPE.BF16, ties), 3))).toEqual([1, 1 + 2 ** -6, -1]);
  });

  it('BF16 keeps a NaN a NaN and makes it quiet', () => {
    const x = new Float32Array(2);
    new Uint32Array(x.buffer).set([0x7f800001, 0xff800001]); // signalling NaNs with payload in the low bits
    const bytes = quantizeGgml(GGML_TYPE.BF16, x);
    expect([...bytes]).toEqual([0xc0, 0x7f, 0xc0, 0xff]);
  });

  it('Q8_0 stays within half a step of the stored scale (plus its f16 rounding)', () => {
    const x = uniform(11, 32 * 64).map((v, i) => v * (1 + (i >> 5)));
    const bytes = quantizeGgml(GGML_TYPE.Q8_0, x);
    const y = dequantizeGgml(GGML_TYPE.Q8_0, bytes, x.length);
    for (let b = 0; b < 64; b++) {
      const d = f16At(bytes, 34 * b);
      const bound = d * (0.5 + 127 * 2 ** -11) * (1 + 1e-6);
      for (let j = 0; j < 32; j++) expect(Math.abs(y[32 * b + j]! - x[32 * b + j]!)).toBeLessThanOrEqual(bound);
    }
  });

  it('Q4_0 stays within half a step, one step for the clamped extreme', () => {
    const x = uniform(12, 32 * 64);
    const bytes = quantizeGgml(GGML_TYPE.Q4_0, x);
    const y = dequantizeGgml(GGML_TYPE.Q4_0, bytes, x.length);
    for (let b = 0; b < 64; b++) {
      const d = Math.abs(f16At(bytes, 18 * b));
      for (let j = 0; j < 32; j++) {
        const v = x[32 * b + j]!;
        // Level +8 does not exist: a value opposite in sign to the extreme and as large lands on +7.
        const step = Math.abs(v) > 7.5 * d ? d : d / 2;
        expect(Math.abs(y[32 * b + j]! - v)).toBeLessThanOrEqual(step * (1 + 2 ** -8) + 8 * d * 2 ** -11);
      }
    }
  });

  it('Q5_0 maps the signed extreme to level -16 and sets the fifth bit from level 16 up', () => {
    const x = new Float32Array(32);
    x.set([16, -15.5, 0.5, -0.5, 3.2, -16]); // max is 16: d = -1, so 16 - x is the code before clamping
    x[16] = -15.49;
    x[31] = 1;
    const bytes = quantizeGgml(GGML_TYPE.Q5_0, x);
    expect([...bytes.subarray(0, 2)]).toEqual([0x00, 0xbc]); // -1
    const qh = new DataView(bytes.buffer).getUint32(2, true);
    const code = (e: number): number => ((e < 16 ? bytes[6 + e]! & 15 : bytes[6 + e - 16]! >> 4) | (((qh >>> e) & 1) << 4));
    // 16 -> 0; -15.5 -> 31.5 truncates to 31; 0.5 -> 16 (rounds half up); -0.5 -> 17; 3.2 -> 13;
    // -16 -> 32 clamps to 31; -15.49 -> 31; 1 -> 15.
    expect([0, 1, 2, 3, 4, 5, 16, 31].map(code)).toEqual([0, 31, 16, 17, 13, 31, 31, 15]);
    // d is negative, so the middle level decodes to -0.
    expect(Array.from(dequantizeGgml(GGML_TYPE.Q5_0, bytes, 32).subarray(0, 6))).toEqual([16, -15, -0, -1, 3, -15]);
  });

  it('Q5_0 stays within half a step, one step for the clamped extreme', () => {
    const x = uniform(15, 32 * 64).map((v, i) => v * (1 + (i >> 5)));
    const bytes = quantizeGgml(GGML_TYPE.Q5_0, x);
    const y = dequantizeGgml(GGML_TYPE.Q5_0, bytes, x.length);
    let sumSq = 0, sumX2 = 0;
    for (let b = 0; b < 64; b++) {
      const d = Math.abs(f16At(bytes, 22 * b));
      for (let j = 0; j < 32; j++) {
        const v = x[32 * b + j]!;
        // Level +16 does not exist: a value opposite in sign to the extreme and as large lands on +15.
        const step = Math.abs(v) > 15.5 * d ? d : d / 2;
        const err = Math.abs(y[32 * b + j]! - v);
        expect(err).toBeLessThanOrEqual(step * (1 + 2 ** -8) + 16 * d * 2 ** -11);
        sumSq += err * err;
        sumX2 += v * v;
      }
    }
    // Twice the levels of Q4_0: relative RMS error about 1 / (16 sqrt 3) of the block maximum.
    expect(Math.sqrt(sumSq / sumX2)).toBeLessThan(0.05);
  });

  it('Q4_K: unclamped levels within half a sub-block step; overall error bounded', () => {
    const x = uniform(13, 256 * 32);
    const bytes = quantizeGgml(GGML_TYPE.Q4_K, x);
    const y = dequantizeGgml(GGML_TYPE.Q4_K, bytes, x.length);
    let sumSq = 0;
    for (let i = 0; i < x.length; i++) {
      const at = 144 * (i >> 8), e = i & 255;
      const [sc] = q4kScaleMin(bytes, at + 4, e >> 5);
      const step = f16At(bytes, at) * sc;
      const group = at + 16 + 32 * (e >> 6);
      const q = (e & 63) < 32 ? bytes[group + (e & 31)]! & 15 : bytes[group + (e & 31)]! >> 4;
      const err = Math.abs(y[i]! - x[i]!);
      if (q > 0 && q < 15) expect(err).toBeLessThanOrEqual(step / 2 + 1e-6);
      expect(err).toBeLessThanOrEqual(0.12); // data in [-1, 1]: sub-block steps are about 2 / 15
      sumSq += err * err;
    }
    expect(Math.sqrt(sumSq / x.length)).toBeLessThan(0.04);
  });

  it('Q6_K: unclamped levels within half a sub-block step; overall error bounded', () => {
    const x = uniform(14, 256 * 32);
    const bytes = quantizeGgml(GGML_TYPE.Q6_K, x);
    const y = dequantizeGgml(GGML_TYPE.Q6_K, bytes, x.length);
    const codes = dequantizeCodesQ6K(bytes);
    let sumSq = 0;
    for (let i = 0; i < x.length; i++) {
      const at = 210 * (i >> 8), e = i & 255;
      const step = Math.abs(f16At(bytes, at + 208) * ((bytes[at + 192 + (e >> 4)]! << 24) >> 24));
      const err = Math.abs(y[i]! - x[i]!);
      if (codes[i]! > 0 && codes[i]! < 63) expect(err).toBeLessThanOrEqual(step / 2 + 1e-6);
      expect(err).toBeLessThanOrEqual(0.025); // data in [-1, 1]: sub-block steps are about 2 / 64
      sumSq += err * err;
    }
    expect(Math.sqrt(sumSq / x.length)).toBeLessThan(0.011);
  });
});

/** The raw 6-bit code of every element: decode with d = 1 and scales 1, then undo the offset. */
function dequantizeCodesQ6K(bytes: Uint8Array): Int32Array {
  const plain = bytes.slice();
  for (let at = 0; at < plain.length; at += 210) {
    plain.fill(1, at + 192, at + 208);
    plain.set(F16_ONE, at + 208);
  }
  return Int32Array.from(dequantizeGgml(GGML_TYPE.Q6_K, plain, (plain.length / 210) * 256), (v) => v + 32);
}
