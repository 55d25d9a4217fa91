// cos and sin of rope angles, shared by rope.wgsl and rope-append.wgsl (prepended to both).

// pi/2 as a sum of parts: the first five have 7 significant bits, so k * part is exact for
// k < 2^17 and the reduction loses nothing for angles below about 2e5 rad (positions < 2e5).
const PIO2_1 = 0x1.9p0f;
const PIO2_2 = 0x1.0cp-7f;
const PIO2_3 = 0x1.ecp-14f;
const PIO2_4 = 0x1.5p-22f;
const PIO2_5 = 0x1.1p-30f;
const PIO2_6 = 0x1.68c234p-39f;
const TWO_OVER_PI = 0.636619772f;

// (cos a, sin a). Builtin cos/sin are only specified to 2^-11 absolute on [-pi, pi] and not at
// all beyond it, and angles reach thousands of radians: reduce by pi/2 (Cody-Waite), then
// minimax polynomials on [-pi/4, pi/4] (Cephes sinf/cosf), good to about 1e-7.
fn cos_sin(a: f32) -> vec2f {
  let k = round(a * TWO_OVER_PI);
  var r = a - k * PIO2_1;
  r -= k * PIO2_2;
  r -= k * PIO2_3;
  r -= k * PIO2_4;
  r -= k * PIO2_5;
  r -= k * PIO2_6;
  let z = r * r;
  let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  switch (i32(k) & 3) {
    case 0: { return vec2f(c, s); }
    case 1: { return vec2f(-s, c); }
    case 2: { return vec2f(-c, -s); }
    default: { return vec2f(s, -c); }
  }
}
