// Element-wise activations: silu(x), gelu(x) (GPT-2's tanh form), swiglu = silu(gate) * up and
// geglu = gelu(gate) * up (Gemma's MLP).
// `out` and the uniform come first so the unary entry points bind a prefix of swiglu's bindings.
// sigmoid, silu and gelu: activation_fns.wgsl, prepended.

struct Params {
  n: u32,
  // The *_split entry points: I, where a holds [T, 2I] rows of gate then up.
  width: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> a: array<f32>; // x, or gate
@group(0) @binding(3) var<storage, read> b: array<f32>; // up

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

// Gate and up side by side in one row (a fused gate/up projection's output, [T, 2I]).
fn split_index(i: u32) -> u32 {
  return (i / params.width) * 2u * params.width + i % params.width;
}

@compute @workgroup_size(WG)
fn swiglu_split_main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = flat_index(gid, groups);
  if (i < params.n) {
    let g = split_index(i);
    out[i] = silu(a[g]) * a[g + params.width];
  }
}

@compute @workgroup_size(WG)
fn geglu_split_main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = flat_index(gid, groups);
  if (i < params.n) {
    let g = split_index(i);
    out[i] = gelu(a[g]) * a[g + params.width];
  }
}
