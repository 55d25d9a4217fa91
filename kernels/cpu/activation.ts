// Activations in f64, rounded to f32 once. JS exp/tanh saturate to Infinity / +-1 without NaN.

const GELU_K = Math.sqrt(2 / Math.PI);

export function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** GPT-2's gelu_new (tanh form). */
export function gelu(v: number): number {
  return 0.5 * v * (1 + Math.tanh(GELU_K * (v + 0.044715 * v * v * v)));
}

export function siluRef(x: Float32Array): Float32Array {
  return x.map(silu);
}

export function geluRef(x: Float32Array): Float32Array {
  return x.map(gelu);
}

/** silu(gate) * up, element-wise. */
export function swigluRef(gate: Float32Array, up: Float32Array): Float32Array {
  return gate.map((g, i) => silu(g) * up[i]!);
}

/** gelu(gate) * up, element-wise (Gemma's gelu_pytorch_tanh is GPT-2's tanh form). */
export function gegluRef(gate: Float32Array, up: Float32Array): Float32Array {
  return gate.map((g, i) => gelu(g) * up[i]!);
}
