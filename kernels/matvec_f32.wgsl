// matvec snippet, f32 weights: group g (elements 4g..4g+3 of the matrix) is one vec4.

@group(1) @binding(0) var<storage, read> w: array<vec4<f32>>;

fn weights4(g: u32) -> vec4<f32> {
  return w[g];
}

fn finish(n: u32, sum: f32) -> f32 {
  return sum;
}
