// Rotary position embedding (Hugging Face rotate-half) on x [T, heads, d], computed as HF does:
// inv_freq in f32, angle = pos * inv_freq rounded to f32, then cos/sin (here in f64) of that angle.

/** inv_freq[i] = 1 / theta^(2i / d), each step rounded to f32 as torch does in f32. */
export function ropeInvFreq(theta: number, headDim: number): Float32Array {
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < out.length; i++) {
    const exponent = Math.fround((2 * i) / headDim);
    out[i] = 1 / Math.fround(Math.pow(Math.fround(theta), exponent));
  }
  return out;
}

/** Rotates every head of every token by its position; positions has one entry per token. */
export function ropeRef(x: Float32Array, positions: Uint32Array, heads: number, headDim: number, theta: number): Float32Array {
  const half = headDim / 2;
  const invFreq = ropeInvFreq(theta, headDim);
  const out = new Float32Array(x.length);
  for (let t = 0; t < positions.length; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(positions[t]! * invFreq[i]!);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      for (let h = 0; h < heads; h++) {
        const lo = (t * heads + h) * headDim + i;
        const a = x[lo]!;
        const b = x[lo + half]!;
        out[lo] = a * c - b * s;
        out[lo + half] = b * c + a * s;
      }
    }
  }
  return out;
}
