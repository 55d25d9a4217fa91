// The block decoders of the five GGML formats, each the body of a KernelWriter loop
// (ggml-wasm-kernel.ts) over the repacked blocks of ggml-layout.ts.
//
// Quant bytes are unpacked with byte masks and 16-bit shifts into vectors of sixteen integers, one
// group's worth at a time, then widened to f32 (KernelWriter.widen). A widened value is the integer
// times a power of two: 2^24 for a signed byte (it lands in the top byte of its lane), 2^4 more for
// a nibble left in the high half of its byte, 2^2 for Q6_K's values built two bits up. Each group's
// scale is multiplied by the inverse power (exact: both are powers of two), so every product and
// partial sum is an exact power-of-two multiple of ggmlLinearRef's and the scaled results are the
// same bits, for activations of magnitude between 2^-96 and 2^96, where no product under- or
// overflows f32.
import { SIMD, type FunctionBody } from './ggml-wasm-asm.ts';
import { KernelWriter } from './ggml-wasm-kernel.ts';
import { LAYOUTS } from './ggml-layout.ts';

/** Q8_0 [f32 d][32 int8]: one group of 32. */
function q8_0Kernel(MB: number): FunctionBody {
  const k = new KernelWriter(MB), f = k.f;
  const lo = f.v128(), hi = f.v128();
  return k.finish(LAYOUTS.q8_0, 0, () => {
    f.get(k.wk).loadSplatF32(0).f32x4Const(2 ** -24).simd(SIMD.f32x4Mul).set(k.scale);
    f.get(k.wk).load(4).set(lo);
    f.get(k.wk).load(20).set(hi);
    k.groupPartials(0, 8, (v) => k.widen(v < 4 ? lo : hi, v % 4, true));
    k.accumulate();
  });
}

/** Q4_0 [f32 d][16 bytes of nibbles ^ 0x88, each nibble q - 8 in two's complement]: one group of 32. */
function q4_0Kernel(MB: number): FunctionBody {
  const k = new KernelWriter(MB), f = k.f;
  const bytes = f.v128(), lo = f.v128(), hi = f.v128();
  return k.finish(LAYOUTS.q4_0, 0, () => {
    // Both nibbles move to the high half of a byte: (q - 8) * 16 as a signed byte, 2^28 once widened.
    f.get(k.wk).loadSplatF32(0).f32x4Const(2 ** -28).simd(SIMD.f32x4Mul).set(k.scale);
    f.get(k.wk).load(4).set(bytes);
    f.get(bytes).i32Const(4).simd(SIMD.i16x8Shl).i8x16Const(0xf0).simd(SIMD.and).set(lo);
    f.get(bytes).i8x16Const(0xf0).simd(SIMD.and).set(hi);
    k.groupPartials(0, 8, (v) => k.widen(v < 4 ? lo : hi, v % 4, true));
    k.accumulate();
  });
}

/** Q5_0 [f32 d][u32 qh][16 bytes of nibbles]: one group of 32. */
function q5_0Kernel(MB: number): FunctionBody {
  const k = new KernelWriter(MB), f = k.f;
  const qh = f.v128(), bytes = f.v128(), lo = f.v128(), hi = f.v128();
  // Byte e of a vector takes bit e % 8 of qh byte `first + e / 8`: masked, it is 0 or m = 2^(e % 8),
  // and subtracting m - 128 leaves bit 7 = the fifth bit, whatever m is.
  const bit = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
  const bias = bit.map((m) => (m - 128) & 0xff);
  const fifthBits = (first: number) => {
    const lanes = [...new Array(8).fill(first), ...new Array(8).fill(first + 1)];
    f.get(qh).v128Const(lanes).simd(SIMD.swizzle).v128Const(bit).simd(SIMD.and).v128Const(bias).simd(SIMD.i8x16Sub);
    f.i8x16Const(0x80).simd(SIMD.and);
  };
  return k.finish(LAYOUTS.q5_0, 0, () => {
    // Each element becomes the signed byte (q - 16) * 8: its nibble three bits up, the fifth bit at
    // bit 7, flipped (subtracting 16 * 8 = 128); widened that is (q - 16) * 2^27.
    f.get(k.wk).loadSplatF32(0).f32x4Const(2 ** -27).simd(SIMD.f32x4Mul).set(k.scale);
    f.get(k.wk).load(4).set(qh); // qh, then nibbles not used here
    f.get(k.wk).load(8).set(bytes);
    f.get(bytes).i32Const(3).simd(SIMD.i16x8Shl).i8x16Const(0x78).simd(SIMD.and);
    fifthBits(0);
    f.simd(SIMD.or).i8x16Const(0x80).simd(SIMD.xor).set(lo);
    f.get(bytes).i32Const(1).simd(SIMD.i16x8ShrU).i8x16Const(0x78).simd(SIMD.and);
    fifthBits(2);
    f.simd(SIMD.or).i8x16Const(0x80).simd(SIMD.xor).set(hi);
    k.groupPartials(0, 8, (v) => k.widen(v < 4 ? lo : hi, v % 4, true));
    k.accumulate();
  });
}

/** Q4_K [f32 d][f32 dmin][8 u8 scales][8 u8 mins][128 bytes of nibbles]: eight groups of 32. */
function q4_kKernel(MB: number): FunctionBody {
  const k = new KernelWriter(MB), f = k.f;
  const scaleBytes = f.v128(), scales = [f.v128(), f.v128()], mins = [f.v128(), f.v128()], min = f.v128();
  const n0 = f.v128(), n1 = f.v128();
  // Even groups' low nibbles widen to q, odd groups' high ones (left in place) to 16 q.
  const factors = [...new Uint8Array(new Float32Array([1, 1 / 16, 1, 1 / 16]).buffer)];
  return k.finish(LAYOUTS.q4_k, 8 * 16, () => {
    // d * sc (with the factors) and dmin * m for the eight groups, as f32x4 pairs: exact products.
    f.get(k.wk).load(8).set(scaleBytes);
    for (let h = 0; h < 2; h++) {
      const ints = (half: number) => {
        f.get(scaleBytes).simd(SIMD.i16x8ExtendLowI8x16U + half).simd(SIMD.i32x4ExtendLowI16x8U + h).simd(SIMD.f32x4ConvertI32x4S);
      };
      ints(0);
      f.get(k.wk).loadSplatF32(0).v128Const(factors).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Mul).set(scales[h]!);
      ints(1);
      f.get(k.wk).loadSplatF32(4).simd(SIMD.f32x4Mul).set(mins[h]!);
    }
    for (let s = 0; s < 8; s++) {
      // Group s: the low (even s) or high nibbles of bytes [32 (s >> 1), + 32).
      const mask = s % 2 ? 0xf0 : 0x0f;
      f.get(k.wk).load(24 + 32 * (s >> 1)).i8x16Const(mask).simd(SIMD.and).set(n0);
      f.get(k.wk).load(40 + 32 * (s >> 1)).i8x16Const(mask).simd(SIMD.and).set(n1);
      k.groupPartials(32 * s, 8, (v) => k.widen(v < 4 ? n0 : n1, v % 4, false));
      k.splatLane(scales[s >> 2]!, s % 4);
      f.set(k.scale);
      k.splatLane(mins[s >> 2]!, s % 4);
      f.set(min);
      // acc += partial * d·sc - xsum * dmin·m
      for (let i = 0; i < MB; i++) {
        f.get(k.acc[i]!);
        f.get(k.partial[i]!).get(k.scale).simd(SIMD.f32x4Mul);
        f.get(k.xsk).load((s * MB + i) * 16).get(min).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Sub);
        f.simd(SIMD.f32x4Add).set(k.acc[i]!);
      }
    }
  });
}

/** Q6_K [f32 d][16 int8 scales][128 ql][64 qh]: sixteen groups of 16. */
function q6_kKernel(MB: number): FunctionBody {
  const k = new KernelWriter(MB), f = k.f;
  const scaleBytes = f.v128(), scales = [f.v128(), f.v128(), f.v128(), f.v128()];
  const qlA = f.v128(), qlB = f.v128(), qh = f.v128(), qh2 = f.v128(), q6 = f.v128();
  // Per 16 values of ql and qh: groups at 0 and 32 are built as q - 32 (2^24 once widened), groups
  // at 64 and 96 two bits up, (q - 32) * 4 (2^26): that saves a shift each.
  const exponents = [24, 26];
  return k.finish(LAYOUTS.q6_k, 0, () => {
    // d * sc for the sixteen groups, as four f32x4 (scales 0-3 and 8-11 belong to groups at 0 and 32).
    f.get(k.wk).load(4).set(scaleBytes);
    for (let j = 0; j < 4; j++) {
      f.get(scaleBytes).simd(SIMD.i16x8ExtendLowI8x16S + (j >> 1)).simd(SIMD.i32x4ExtendLowI16x8S + (j & 1)).simd(SIMD.f32x4ConvertI32x4S);
      f.get(k.wk).loadSplatF32(0).f32x4Const(2 ** -exponents[j & 1]!).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Mul).set(scales[j]!);
    }
    for (let h = 0; h < 2; h++) {
      for (let lb = 0; lb < 2; lb++) {
        f.get(k.wk).load(20 + 64 * h + 16 * lb).set(qlA); // ql[l], l = 16 lb..: low nibbles at 0, high at 64
        f.get(k.wk).load(20 + 64 * h + 32 + 16 * lb).set(qlB); // ql[l + 32]: at 32 and 96
        f.get(k.wk).load(148 + 32 * h + 16 * lb).set(qh); // bits 0-1, 2-3, 4-5, 6-7: at 0, 32, 64, 96
        f.get(qh).i32Const(2).simd(SIMD.i16x8Shl).set(qh2);
        for (let g = 0; g < 4; g++) {
          if (g < 2) {
            // (ql & 15 | (qh bits << 4)) - 32
            f.get(g === 0 ? qlA : qlB).i8x16Const(0x0f).simd(SIMD.and);
            if (g === 0) f.get(qh).i32Const(4).simd(SIMD.i16x8Shl);
            else f.get(qh2);
            f.i8x16Const(0x30).simd(SIMD.and).simd(SIMD.or).i8x16Const(32).simd(SIMD.i8x16Sub).set(q6);
          } else {
            // ((ql >> 4) << 2 | (qh bits << 6)) ^ 0x80, that is (q - 32) * 4
            f.get(g === 2 ? qlA : qlB).i32Const(2).simd(SIMD.i16x8ShrU).i8x16Const(0x3c).simd(SIMD.and);
            f.get(g === 2 ? qh2 : qh).i8x16Const(0xc0).simd(SIMD.and).simd(SIMD.or).i8x16Const(0x80).simd(SIMD.xor).set(q6);
          }
          k.groupPartials(128 * h + 32 * g + 16 * lb, 4, (v) => k.widen(q6, v, true));
          const s = 8 * h + lb + 2 * g;
          k.splatLane(scales[s >> 2]!, s % 4);
          f.set(k.scale);
          k.accumulate();
        }
      }
    }
  });
}

/** The kernel writers, by format: each takes the number of x rows (1..4). */
export const FORMAT_KERNELS = { q8_0: q8_0Kernel, q4_0: q4_0Kernel, q5_0: q5_0Kernel, q4_k: q4_kKernel, q6_k: q6_kKernel } as const;
