// Element-wise activations: silu(x), gelu(x) (GPT-2's tanh form), swiglu = silu(gate) * up and
// geglu = gelu(gate) * up (Gemma's MLP).
// `out` and the uniform come first so the unary entry points bind a prefix of swiglu's bindings.

struct Params {
  n: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> a: array<f32>; // x, or gate
@group(0) @binding(3) var<storage, read> b: array<f32>; // up

// exp only ever sees a non-positive argument, so nothing overflows for large |v|.
fn sigmoid(v: f32) -> f32 {
  let e = exp(-abs(v));
  let s = 1.0 / (1.0 + e);
  return select(e * s, s, v >= 0.0);
}

fn silu(v: f32) -> f32 {
  return v * sigmoid(v);
}

// 0.5 v (1 + tanh(u)) == v * sigmoid(2u), u = sqrt(2/pi) (v + 0.044715 v^3): no tanh to overflow,
// no 1 + tanh cancellation. Past |v| = 10, sigmoid(2u) is 1 or below 1e-37, so clamping v inside
// u changes nothing and keeps v^3 finite.
fn gelu(v: f32) -> f32 {
  let c = clamp(v, -10.0, 10.0);
  let u = 0.7978845608 * (c + 0.044715 * c * c * c);
  return v * sigmoid(2.0 * u);
}

fn flat_index(gid: vec3u, groups: vec3u) -> u32 {
  return gid.x + gid.y * groups.x * WG;
}

@compute @workgroup_size(WG)
fn silu_main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = flat_index(gid, groups);
  if (i < params.n) {
    out[i] = silu(a[i]);
  }
}

@compute @workgroup_size(WG)
fn gelu_main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = flat_index(gid, groups);
  if (i < params.n) {
    out[i] = gelu(a[i]);
  }
}

@compute @workgroup_size(WG)
fn swiglu_main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = flat_index(gid, groups);
  if (i < params.n) {
    out[i] = silu(a[i]) * b[i];
  }
}

@compute @workgroup_size(WG)
fn geglu_main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = flat_index(gid, groups);
  if (i < params.n) {
    out[i] = gelu(a[i]) * b[i];
  }
}
