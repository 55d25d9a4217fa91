// matvec epilogue: residual[m, col0 + n] + the product (the residual add of an output projection;
// residual has out's shape).

@group(0) @binding(6) var<storage, read> addend: array<f32>;

fn store(m: u32, n: u32, v: f32) {
  let i = m * params.ldo + params.col0 + n;
  out[i] = addend[i] + v;
}

fn store_gated(m: u32, j: u32, gate: f32, up: f32) {}
