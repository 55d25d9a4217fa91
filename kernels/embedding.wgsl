// out[t, h] = table[ids[t], h] for the ids in one row part of the table: one thread per output
// element, one dispatch per part. An id outside the part is left to the part that holds it; an id
// at or past the whole vocabulary writes zeros (in the dispatch that has `zeros` set) rather than
// reading past the table.

struct Params {
  n: u32,         // T * H
  hidden: u32,    // H
  row_start: u32, // first vocabulary row of this part
  rows: u32,      // rows in this part
  vocab: u32,     // V of the whole table
  zeros: u32,     // 1: this dispatch writes the zero rows of ids >= vocab
}

override WG: u32 = 256;
// The table is read as raw words either way: f32 bits, or two f16 halves per word (tensor.ts).
override HALF: bool = false;

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WG;
  if (i >= params.n) {
    return;
  }
  let id = ids[i / params.hidden];
  if (id >= params.vocab) {
    if (params.zeros != 0u) {
      out[i] = 0.0;
    }
    return;
  }
  // Unsigned: an id below row_start wraps past rows.
  let row = id - params.row_start;
  if (row >= params.rows) {
    return;
  }
  let e = row * params.hidden + i % params.hidden;
  if (HALF) {
    out[i] = unpack2x16float(table[e >> 1u])[e & 1u];
  } else {
    out[i] = bitcast<f32>(table[e]);
  }
}
