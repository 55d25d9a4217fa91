// IEEE half precision in plain TypeScript: the wire format of hidden states between peers and the
// f16 storage format of weights (kernels/quant.ts packs it), so both sides round the same way.

const f32Box = new Float32Array(1);
const u32Box = new Uint32Array(f32Box.buffer);

/** The f16 bit pattern nearest to `value` (round to nearest, ties to even; overflow gives inf). */
export function f32ToF16(value: number): number {
  f32Box[0] = value;
  const bits = u32Box[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // NaN stays a (quiet) NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e >= 1) {
    // Normal: a carry out of the mantissa rolls into the exponent (and up to inf), as it should.
    const half = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    return sign | (rest > 0x1000 || (rest === 0x1000 && (half & 1)) ? half + 1 : half);
  }
  // Subnormal (or zero): the f16 unit is 2^-24, the 24-bit significand shifts right by 14 - e.
  const shift = 14 - e;
  if (shift > 24) return sign;
  const sig = mant | 0x800000;
  const half = sig >>> shift;
  const rest = sig & ((1 << shift) - 1);
  const tie = 1 << (shift - 1);
  return sign | (rest > tie || (rest === tie && (half & 1)) ? half + 1 : half);
}

/** The value of an f16 bit pattern. */
export function f16ToF32(half: number): number {
  const sign = half & 0x8000 ? -1 : 1;
  const exp = (half >>> 10) & 0x1f;
  const mant = half & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  u32Box[0] = ((half & 0x8000) << 16) | ((exp + 112) << 23) | (mant << 13);
  return f32Box[0]!;
}
