// Which output row a group of TPR lanes computes (matvec.wgsl, matvec_wide_subgroups.wgsl): slot s
// is row s; with GATED the weight is [gate; up] (N = 2I rows) and neighbouring slots take gate row
// j = s / 2 (even s) and up row I + j (odd s), which the gate's lane 0 combines into out[m, j].

struct Slot {
  n: u32,
  j: u32,
  half: u32,
  valid: bool,
}

fn slot_row(slot: u32) -> Slot {
  let half = params.N / 2u;
  let j = slot / 2u;
  let n = select(slot, select(j, half + j, (slot & 1u) == 1u), GATED);
  return Slot(n, j, half, select(n < params.N, j < half, GATED));
}
