// matvec epilogue: + bias[col0 + n] (a linear layer's bias, as the separate add computes it).

@group(1) @binding(3) var<storage, read> addend: array<f32>;

fn store(m: u32, n: u32, v: f32) {
  out[m * params.ldo + params.col0 + n] = v + addend[params.col0 + n];
}

fn store_gated(m: u32, j: u32, gate: f32, up: f32) {}
