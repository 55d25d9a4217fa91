// Linear over GGML-quantized weights (x · wᵀ, w [N, K] as a GGUF file stores it), in the summation
// order of the CPU backend's SIMD kernels (client/model/backend/ggml-wasm.ts), so that they can be
// checked bit for bit; it is also their fallback where WebAssembly SIMD is missing.
//
// The weights of a row fall into scale groups: 32 elements in Q8_0, Q4_0, Q5_0 and Q4_K (one per block
// or sub-block), 16 in Q6_K. Every group has integer weights q (Q4_0: nibble - 8, Q5_0: its 5-bit code
// - 16, Q6_K: q - 32) and a
// scale (Q6_K: f32(d * sc); Q4_K also a min: w = f32(d * sc) * q - f32(dmin * m)). In f32 throughout:
//   per group, lanes l = 0..3: partial_l = sum over v of q[4v + l] * x[4v + l] (v in order),
//     Q4_K: xsum_l = sum over v of x[4v + l] likewise; term_l = partial_l * scale - xsum_l * min,
//     else term_l = partial_l * scale; acc_l += term_l;
//   out = (acc_0 + acc_1) + (acc_2 + acc_3).
// Groups come in element order, except Q6_K's: per 128-element half, per 16-element quarter of its
// ql run (lb = 0, 1), the groups starting at 32 g + 16 lb for g = 0..3: the order in which the kernel
// unpacks them from shared bytes.
import { AigridError } from '../../protocol/errors.ts';
import { GGML_TYPE, ggmlRowBytes, ggmlTypeName, q4kScaleMin, type GgmlBlocks } from '../ggml-quants.ts';
import { f16ToF32 } from '../quant.ts';

const f32 = Math.fround;

/** One weight row decoded to integers, and its groups in summation order. */
interface RowGroups {
  /** Integer weight per element. */
  q: Int8Array;
  /** Per group in summation order: first element, scale, min (0 but in Q4_K). */
  first: Int32Array;
  scale: Float32Array;
  min: Float32Array;
  size: number;
}

function f16At(bytes: Uint8Array, at: number): number {
  return f16ToF32(bytes[at]! | (bytes[at + 1]! << 8));
}

function rowGroups(type: number, bytes: Uint8Array, K: number): RowGroups {
  const q = new Int8Array(K);
  const size = type === GGML_TYPE.Q6_K ? 16 : 32;
  const groups = K / size;
  const first = new Int32Array(groups), scale = new Float32Array(groups), min = new Float32Array(groups);
  let g = 0;
  const group = (start: number, s: number, m = 0) => {
    first[g] = start; scale[g] = s; min[g] = m; g++;
  };
  switch (type) {
    case GGML_TYPE.Q8_0:
      for (let b = 0, at = 0; b < K; b += 32, at += 34) {
        for (let j = 0; j < 32; j++) q[b + j] = bytes[at + 2 + j]! << 24 >> 24;
        group(b, f16At(bytes, at));
      }
      break;
    case GGML_TYPE.Q4_0:
      for (let b = 0, at = 0; b < K; b += 32, at += 18) {
        for (let j = 0; j < 16; j++) {
          q[b + j] = (bytes[at + 2 + j]! & 0xf) - 8;
          q[b + j + 16] = (bytes[at + 2 + j]! >> 4) - 8;
        }
        group(b, f16At(bytes, at));
      }
      break;
    case GGML_TYPE.Q5_0:
      for (let b = 0, at = 0; b < K; b += 32, at += 22) {
        const qh = (bytes[at + 2]! | (bytes[at + 3]! << 8) | (bytes[at + 4]! << 16) | (bytes[at + 5]! << 24)) >>> 0;
        for (let j = 0; j < 16; j++) {
          q[b + j] = ((bytes[at + 6 + j]! & 0xf) | (((qh >>> j) & 1) << 4)) - 16;
          q[b + j + 16] = ((bytes[at + 6 + j]! >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16;
        }
        group(b, f16At(bytes, at));
      }
      break;
    case GGML_TYPE.Q4_K:
      for (let b = 0, at = 0; b < K; b += 256, at += 144) {
        const d = f16At(bytes, at), dmin = f16At(bytes, at + 2);
        for (let s = 0; s < 8; s++) {
          const [sc, m] = q4kScaleMin(bytes, at + 4, s);
          const qs = at + 16 + 32 * (s >> 1), shift = 4 * (s & 1);
          for (let l = 0; l < 32; l++) q[b + 32 * s + l] = (bytes[qs + l]! >> shift) & 0xf;
          group(b + 32 * s, f32(d * sc), f32(dmin * m));
        }
      }
      break;
    case GGML_TYPE.Q6_K:
      for (let b = 0, at = 0; b < K; b += 256, at += 210) {
        const d = f16At(bytes, at + 208);
        for (let h = 0; h < 2; h++) {
          const ql = at + 64 * h, qh = at + 128 + 32 * h, y = b + 128 * h;
          for (let l = 0; l < 32; l++) {
            const lo = bytes[ql + l]!, lo32 = bytes[ql + l + 32]!, hi = bytes[qh + l]!;
            q[y + l] = ((lo & 0xf) | ((hi & 3) << 4)) - 32;
            q[y + l + 32] = ((lo32 & 0xf) | (((hi >> 2) & 3) << 4)) - 32;
            q[y + l + 64] = ((lo >> 4) | (((hi >> 4) & 3) << 4)) - 32;
            q[y + l + 96] = ((lo32 >> 4) | (((hi >> 6) & 3) << 4)) - 32;
          }
          for (let lb = 0; lb < 2; lb++) {
            for (let grp = 0; grp < 4; grp++) {
              const sc = bytes[at + 192 + 8 * h + lb + 2 * grp]! << 24 >> 24;
              group(y + 32 * grp + 16 * lb, f32(d * sc));
            }
          }
        }
      }
      break;
  }
  return { q, first, scale, min, size };
}

/** The four lane sums of x over each 32-element group of a row: [K / 32][4], as the Q4_K kernel reads them. */
export function groupSums(x: Float32Array, offset: number, K: number): Float32Array {
  const out = new Float32Array(K / 8);
  for (let g = 0; g < K; g += 32) {
    for (let l = 0; l < 4; l++) {
      let s = x[offset + g + l]!;
      for (let v = 1; v < 8; v++) s = f32(s + x[offset + g + 4 * v + l]!);
      out[g / 8 + l] = s;
    }
  }
  return out;
}

/** Throws unless `w` is a matrix of a format with kernels, holding `rows` rows of whole blocks. */
export function checkGgmlWeight(w: GgmlBlocks): void {
  const types: number[] = [GGML_TYPE.Q8_0, GGML_TYPE.Q4_0, GGML_TYPE.Q5_0, GGML_TYPE.Q4_K, GGML_TYPE.Q6_K];
  if (!types.includes(w.type)) {
    throw new AigridError('ERR_DTYPE_UNSUPPORTED', `ggml linear: GGML ${ggmlTypeName(w.type)} has no kernel; supported: Q8_0, Q4_0, Q5_0, Q4_K, Q6_K`);
  }
  const rowBytes = ggmlRowBytes(w.type, w.cols); // throws unless cols is whole blocks
  if (!Number.isSafeInteger(w.rows) || w.rows < 0 || w.bytes.byteLength !== w.rows * rowBytes) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `ggml linear: a [${w.rows}, ${w.cols}] ${ggmlTypeName(w.type)} matrix takes ${w.rows * rowBytes} bytes, got ${w.bytes.byteLength}`);
  }
}

/** Throws unless `x` is [M, K]. */
export function checkGgmlInput(x: Float32Array, M: number, K: number): void {
  if (!Number.isSafeInteger(M) || M < 0 || x.length !== M * K) {
    throw new AigridError('ERR_SHAPE_MISMATCH', `ggml linear: x has ${x.length} values, expected [${M}, ${K}]`);
  }
}

/** out [M, N] = x [M, K] · wᵀ for w [N, K] in a GGML block format, in the kernels' order (above). */
export function ggmlLinearRef(x: Float32Array, w: GgmlBlocks, M: number): Float32Array {
  checkGgmlWeight(w);
  checkGgmlInput(x, M, w.cols);
  const { rows: N, cols: K } = w;
  const out = new Float32Array(M * N);
  if (M === 0 || N === 0) return out;
  const rowBytes = ggmlRowBytes(w.type, K);
  const acc = new Float64Array(4);
  for (let n = 0; n < N; n++) {
    const { q, first, scale, min, size } = rowGroups(w.type, w.bytes.subarray(n * rowBytes, (n + 1) * rowBytes), K);
    for (let m = 0; m < M; m++) {
      const xo = m * K;
      acc.fill(0);
      for (let g = 0; g < first.length; g++) {
        const start = first[g]!;
        for (let l = 0; l < 4; l++) {
          const e = start + l;
          let partial = f32(q[e]! * x[xo + e]!);
          let xsum = x[xo + e]!;
          for (let v = 4; v < size; v += 4) {
            partial = f32(partial + f32(q[e + v]! * x[xo + e + v]!));
            xsum = f32(xsum + x[xo + e + v]!);
          }
          const term = w.type === GGML_TYPE.Q4_K ? f32(f32(partial * scale[g]!) - f32(xsum * min[g]!)) : f32(partial * scale[g]!);
          acc[l] = f32(acc[l]! + term);
        }
      }
      out[m * N + n] = f32(f32(acc[0]! + acc[1]!) + f32(acc[2]! + acc[3]!));
    }
  }
  return out;
}
