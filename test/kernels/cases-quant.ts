// quant.ts on the CPU: f16 rounding (exhaustive over the halves), packing, and the q8 / q4
// layouts and their round-trip error bounds.
import {
  dequantizeQ4,
  dequantizeQ8,
  f16ToF32,
  f32ToF16,
  packF16,
  quantizeQ4,
  quantizeQ8,
  unpackF16,
  type ScaleDtype,
} from '../../kernels/quant.ts';
import { all, randomFloats, type CaseOutcome, type KernelCase } from './check.ts';

const bits = new Uint32Array(1);
const float = new Float32Array(bits.buffer);

/** The f32 next to `v` towards +inf (dir 1) or -inf (dir -1), for positive v. */
function nextF32(v: number, dir: 1 | -1): number {
  float[0] = v;
  bits[0]! += dir;
  return float[0]!;
}

function expectHalf(value: number, want: number): CaseOutcome {
  const got = f32ToF16(value);
  return { ok: got === want, detail: `f32ToF16(${value}) = 0x${got.toString(16)}, want 0x${want.toString(16)}` };
}

/** |w - dequantized| <= scale / 2 per element, with the scale each element was quantized with. */
function roundTripBound(w: Float32Array, back: Float32Array, scaleOf: (i: number) => number): CaseOutcome {
  let worst = 0;
  for (let i = 0; i < w.length; i++) {
    const err = Math.abs(w[i]! - back[i]!);
    const bound = scaleOf(i) / 2 + 1e-7 * Math.abs(w[i]!);
    if (err > bound) return { ok: false, detail: `element ${i}: |${w[i]} - ${back[i]}| > ${bound}` };
    worst = Math.max(worst, err);
  }
  return { ok: true, detail: `max error ${worst.toExponential(2)}` };
}

function maxAbs(w: Float32Array, from: number, to: number): number {
  let m = 0;
  for (let i = from; i < to; i++) m = Math.max(m, Math.abs(w[i]!));
  return m;
}

export const CASES: KernelCase[] = [
  {
    name: 'quant: f16 special values, subnormals and ties round to nearest even',
    async run() {
      const outcomes = [
        expectHalf(0, 0),
        expectHalf(-0, 0x8000),
        expectHalf(1, 0x3c00),
        expectHalf(-2, 0xc000),
        expectHalf(65504, 0x7bff),
        expectHalf(65519.99, 0x7bff),
        expectHalf(65520, 0x7c00),
        expectHalf(1e10, 0x7c00),
        expectHalf(Infinity, 0x7c00),
        expectHalf(-Infinity, 0xfc00),
        expectHalf(2 ** -24, 0x0001),
        expectHalf(2 ** -25, 0),
        expectHalf(nextF32(2 ** -25, 1), 0x0001),
        expectHalf(3 * 2 ** -25, 0x0002),
        expectHalf(1023 * 2 ** -24, 0x03ff),
        expectHalf(2 ** -14, 0x0400),
        expectHalf(1e-30, 0),
        expectHalf(1 + 2 ** -11, 0x3c00),
        expectHalf(1 + 3 * 2 ** -11, 0x3c02),
        expectHalf(1 + 2 ** -11 + 2 ** -20, 0x3c01),
      ];
      const nan = f32ToF16(NaN);
      outcomes.push({ ok: (nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0, detail: `NaN -> 0x${nan.toString(16)}` });
      outcomes.push({ ok: Number.isNaN(f16ToF32(0x7e00)) && f16ToF32(0xfc00) === -Infinity, detail: 'f16ToF32 of NaN and -inf' });
      return all(outcomes);
    },
  },
  {
    name: 'quant: every half round-trips, and every midpoint between halves rounds to even',
    async run() {
      for (let h = 0; h < 0x10000; h++) {
        const v = f16ToF32(h);
        if (Number.isNaN(v)) {
          if ((h & 0x7c00) !== 0x7c00 || (h & 0x3ff) === 0) return { ok: false, detail: `0x${h.toString(16)} read as NaN` };
          continue;
        }
        if (f32ToF16(v) !== h) return { ok: false, detail: `0x${h.toString(16)} -> ${v} -> 0x${f32ToF16(v).toString(16)}` };
        if ((h & 0x7fff) >= 0x7bff) continue;
        // Between h and the next half up in magnitude: the midpoint goes to the even one.
        const mid = (v + f16ToF32(h + 1)) / 2;
        const even = h & 1 ? h + 1 : h;
        if (mid === 0) continue;
        const away = Math.abs(mid) === mid ? 1 : -1;
        const above = nextF32(Math.abs(mid), 1) * away;
        const below = nextF32(Math.abs(mid), -1) * away;
        if (f32ToF16(mid) !== even || f32ToF16(above) !== h + 1 || f32ToF16(below) !== h) {
          return { ok: false, detail: `midpoint after 0x${h.toString(16)}: ${f32ToF16(below)}, ${f32ToF16(mid)}, ${f32ToF16(above)}` };
        }
      }
      return { ok: true, detail: '65536 halves' };
    },
  },
  {
    name: 'quant: packF16 / unpackF16 keep order and odd lengths',
    async run() {
      const values = [1, -2, 0.5, 65504, -0.25];
      const packed = packF16(values);
      const back = unpackF16(packed, values.length);
      const layout = packed.length === 3 && packed[0] === (0x3c00 | (0xc000 << 16)) >>> 0 && packed[2] === 0xb400;
      const same = values.every((v, i) => back[i] === v);
      return { ok: layout && same, detail: `words ${Array.from(packed, (w) => w.toString(16)).join(' ')}; back ${Array.from(back).join(' ')}` };
    },
  },
  {
    name: 'quant: q8 layout, zero rows and round-trip error within scale / 2',
    async run() {
      const outcomes: CaseOutcome[] = [];
      const row = new Float32Array([1, -1, 0.25, 0, -0.75]);
      const q = quantizeQ8(row, 1, 5);
      // 127, -127, round(31.75) = 32, 0 | round(-95.25) = -95 in the second word, zero padding.
      outcomes.push({ ok: q.data.length === 2 && q.data[0] === 0x0020817f && q.data[1] === 0xa1, detail: `q8 words ${Array.from(q.data, (w) => w.toString(16))}` });
      const zeros = quantizeQ8(new Float32Array(6), 2, 3);
      outcomes.push({ ok: dequantizeQ8(zeros.data, zeros.scales, 2, 3).every((v) => v === 0), detail: 'zero rows stay zero' });
      for (const scaleDtype of ['f32', 'f16'] as ScaleDtype[]) {
        const [N, K] = [13, 37];
        const w = randomFloats(5, N * K, -3, 3);
        const qq = quantizeQ8(w, N, K, scaleDtype);
        const back = dequantizeQ8(qq.data, qq.scales, N, K, scaleDtype);
        const scales = scaleDtype === 'f32' ? (qq.scales as Float32Array) : unpackF16(qq.scales as Uint32Array, N);
        outcomes.push(roundTripBound(w, back, (i) => scales[Math.floor(i / K)]!));
        const expected = maxAbs(w, 0, K) / 127;
        outcomes.push({ ok: Math.abs(scales[0]! - expected) <= expected * 1e-3, detail: `${scaleDtype} scale ${scales[0]} ~ ${expected}` });
      }
      return all(outcomes);
    },
  },
  {
    name: 'quant: q4 nibble order and round-trip error within scale / 2',
    async run() {
      const outcomes: CaseOutcome[] = [];
      // Values -7..7 with max 7: scale 1, nibble = value + 8 at word j >> 3, bits 4 (j & 7).
      const block = Float32Array.from({ length: 64 }, (_, j) => (j % 15) - 7);
      const q = quantizeQ4(block, 2, 32);
      let layout = true;
      for (let j = 0; j < 64; j++) {
        const nibble = (q.data[(j >> 5) * 4 + ((j & 31) >> 3)]! >>> ((j & 7) * 4)) & 0xf;
        layout &&= nibble === (j % 15) + 1;
      }
      outcomes.push({ ok: layout && q.data.length === 8, detail: `q4 words ${Array.from(q.data, (w) => w.toString(16))}` });
      for (const scaleDtype of ['f32', 'f16'] as ScaleDtype[]) {
        const [N, K] = [5, 96];
        const w = randomFloats(6, N * K, -2, 2);
        const qq = quantizeQ4(w, N, K, scaleDtype);
        const back = dequantizeQ4(qq.data, qq.scales, N, K, scaleDtype);
        const scales = scaleDtype === 'f32' ? (qq.scales as Float32Array) : unpackF16(qq.scales as Uint32Array, (N * K) / 32);
        outcomes.push(roundTripBound(w, back, (i) => scales[Math.floor(i / 32)]!));
        const expected = maxAbs(w, 32, 64) / 7;
        outcomes.push({ ok: Math.abs(scales[1]! - expected) <= expected * 1e-3, detail: `${scaleDtype} block scale ${scales[1]} ~ ${expected}` });
      }
      return all(outcomes);
    },
  },
];
