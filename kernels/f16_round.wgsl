// f32 -> f16 rounding by integer code, shared by kv-append.wgsl and rope-append.wgsl (prepended).

// The f16 bits nearest to the f32 `bits` (ties to even, overflow to inf, NaN stays NaN), step for
// step as f32ToF16 in protocol/f16.ts, so both backends store the same halves.
fn toHalf(bits: u32) -> u32 {
  let sign = (bits >> 16u) & 0x8000u;
  let exp = i32((bits >> 23u) & 0xffu);
  let mant = bits & 0x7fffffu;
  if (exp == 255) {
    return sign | 0x7c00u | select(0u, 0x200u | (mant >> 13u), mant != 0u);
  }
  let e = exp - 112;
  if (e >= 31) {
    return sign | 0x7c00u;
  }
  if (e >= 1) {
    // A carry out of the mantissa rolls into the exponent (and up to inf), as it should.
    let half = (u32(e) << 10u) | (mant >> 13u);
    let rest = mant & 0x1fffu;
    return sign | (half + select(0u, 1u, rest > 0x1000u || (rest == 0x1000u && (half & 1u) == 1u)));
  }
  // Subnormal or zero: the f16 unit is 2^-24.
  let shift = u32(14 - e);
  if (shift > 24u) {
    return sign;
  }
  let sig = mant | 0x800000u;
  let half = sig >> shift;
  let rest = sig & ((1u << shift) - 1u);
  let tie = 1u << (shift - 1u);
  return sign | (half + select(0u, 1u, rest > tie || (rest == tie && (half & 1u) == 1u)));
}
