// Rotary position embedding (Hugging Face rotate-half) on x [T, heads, d], computed as HF does:
// inv_freq in f32, angle = pos * inv_freq rounded to f32, then cos/sin (here in f64) of that angle.
// Scaled ropes (config rope_scaling) only change inv_freq, so both backends take a table.

/**
 * config.json rope_scaling: `linear` divides every frequency by `factor`; `llama3` (Llama 3.1 and
 * later) divides the low frequencies (wavelength above originalMaxPositions / lowFreqFactor) by
 * `factor`, keeps the high ones (below originalMaxPositions / highFreqFactor), and blends between.
 * `factors` divides each frequency by its own factor: how GGUF files carry Llama 3's scaling
 * (llama.cpp's rope_freqs tensor).
 */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number }
  | { type: 'factors'; factors: readonly number[] };

const f = Math.fround;

/** inv_freq[i] = 1 / theta^(2i / d), then scaled; each step rounded to f32 as torch does in f32. */
export function ropeInvFreq(theta: number, headDim: number, scaling?: RopeScaling): Float32Array {
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < out.length; i++) {
    const exponent = f((2 * i) / headDim);
    out[i] = 1 / f(Math.pow(f(theta), exponent));
  }
  if (scaling?.type === 'linear') for (let i = 0; i < out.length; i++) out[i] = f(out[i]! / scaling.factor);
  if (scaling?.type === 'factors') for (let i = 0; i < out.length; i++) out[i] = f(out[i]! / scaling.factors[i]!);
  if (scaling?.type === 'llama3') {
    const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: old } = scaling;
    const [lowWavelen, highWavelen] = [old / low, old / high];
    for (let i = 0; i < out.length; i++) {
      const inv = out[i]!;
      const wavelen = f(f(2 * Math.PI) / inv);
      if (wavelen > lowWavelen) out[i] = f(inv / factor);
      else if (wavelen >= highWavelen) {
        const smooth = f(f(f(old / wavelen) - low) / (high - low));
        out[i] = f(f(f(1 - smooth) * f(inv / factor)) + f(smooth * inv));
      }
    }
  }
  return out;
}

/** Rotates every head of every token by its position; positions has one entry per token. */
export function ropeRef(x: Float32Array, positions: Uint32Array, heads: number, headDim: number, theta: number, scaling?: RopeScaling): Float32Array {
  const half = headDim / 2;
  const invFreq = ropeInvFreq(theta, headDim, scaling);
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
