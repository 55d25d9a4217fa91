// RMSNorm and LayerNorm over rows of `cols` values, accumulating in f64.

/** Hugging Face LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * weight. */
export function rmsNormRef(x: Float32Array, weight: Float32Array, eps: number): Float32Array {
  const cols = weight.length;
  const out = new Float32Array(x.length);
  for (let base = 0; base < x.length; base += cols) {
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += x[base + c]! ** 2;
    const scale = 1 / Math.sqrt(sum / cols + eps);
    for (let c = 0; c < cols; c++) out[base + c] = x[base + c]! * scale * weight[c]!;
  }
  return out;
}

/** GPT-2 LayerNorm: biased variance (two passes), eps inside the square root. */
export function layerNormRef(x: Float32Array, gamma: Float32Array, beta: Float32Array, eps: number): Float32Array {
  const cols = gamma.length;
  const out = new Float32Array(x.length);
  for (let base = 0; base < x.length; base += cols) {
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += x[base + c]!;
    const mean = sum / cols;
    let dev = 0;
    for (let c = 0; c < cols; c++) dev += (x[base + c]! - mean) ** 2;
    const scale = 1 / Math.sqrt(dev / cols + eps);
    for (let c = 0; c < cols; c++) out[base + c] = (x[base + c]! - mean) * scale * gamma[c]! + beta[c]!;
  }
  return out;
}
