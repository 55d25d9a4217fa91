// The CPU side of CastOp: f32 <-> f16 packed two per u32, round to nearest even, overflow to
// infinity. The bit conversions live with the other weight formats in quant.ts.
import { packF16, unpackF16 } from '../quant.ts';

export { f16ToF32, f32ToF16 } from '../quant.ts';

/** f32 values -> f16 packed two per u32 (an odd count leaves the last high half zero). */
export function castF32ToF16(x: ArrayLike<number>): Uint32Array {
  return packF16(x);
}

/** The first n halves of packed f16 data -> f32. */
export function castF16ToF32(packed: Uint32Array, n = packed.length * 2): Float32Array {
  return unpackF16(packed, n);
}
