// Linear layers on the CPU: the reference for the GPU kernels and the CPU backend of peers
// without WebGPU. Sums accumulate in f64 and are rounded to f32 once.
import { AigridError } from '../../protocol/index.ts';
import { dequantizeQ4, dequantizeQ8, roundF16Array, unpackF16, type ScaleDtype } from '../quant.ts';

/** out[m, n] = sum_k x[m, k] * w[n, k]: x is [M, K], w is [N, K] (out x in), out is [M, N]. */
export function linearRef(x: Float32Array, M: number, K: number, w: Float32Array, N: number): Float32Array {
  if (x.length !== M * K) throw new AigridError('ERR_SHAPE_MISMATCH', `linearRef: x has ${x.length} values, expected [${M}, ${K}]`);
  if (w.length !== N * K) throw new AigridError('ERR_SHAPE_MISMATCH', `linearRef: w has ${w.length} values, expected [${N}, ${K}]`);
  const out = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    const xo = m * K;
    for (let n = 0; n < N; n++) {
      const wo = n * K;
      let sum = 0;
      for (let k = 0; k < K; k++) sum += x[xo + k]! * w[wo + k]!;
      out[m * N + n] = sum;
    }
  }
  return out;
}

/** A weight as stored for the GPU (see quant.ts for the layouts). */
export type PackedWeight =
  | { dtype: 'f32'; data: Float32Array }
  | { dtype: 'f16'; data: Uint32Array }
  | { dtype: 'q8' | 'q4'; data: Uint32Array; scales: Float32Array | Uint32Array; scaleDtype: ScaleDtype };

/** The f32 values of a stored weight [N, K]. */
export function unpackWeight(w: PackedWeight, N: number, K: number): Float32Array {
  switch (w.dtype) {
    case 'f32':
      return w.data;
    case 'f16':
      return unpackF16(w.data, N * K);
    case 'q8':
      return dequantizeQ8(w.data, w.scales, N, K, w.scaleDtype);
    case 'q4':
      return dequantizeQ4(w.data, w.scales, N, K, w.scaleDtype);
  }
}

/**
 * What the native-f16 matmul computes: activations rounded to f16 (its tiles are f16), products
 * of f16 operands (exact in f32) summed in f32. `w` holds the f16-rounded weights.
 */
export function linearF16ActivationsRef(x: Float32Array, M: number, K: number, w: Float32Array, N: number): Float32Array {
  return linearRef(roundF16Array(x), M, K, w, N);
}
