// matvec_wide.wgsl: the scales of q8 / q4 weights (f32, or f16 pairs), prepended to their snippet.

@group(1) @binding(1) var<storage, read> scales: array<u32>;

fn scale_at(i: u32) -> f32 {
  if (params.scaleF16 != 0u) {
    return unpack2x16float(scales[i >> 1u])[i & 1u];
  }
  return bitcast<f32>(scales[i]);
}
