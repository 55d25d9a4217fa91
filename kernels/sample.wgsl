// Draws one token from logits in a single workgroup; the decision rule is written out in
// kernels/cpu/sample.ts. Thresholds are found bit by bit over order keys (a count or a mass per bit),
// so nothing is sorted and nothing of size V is kept in shared memory.

struct Params {
  n: u32,
  topK: u32,       // 0 when top-k keeps every token
  seed: u32,
  step: u32,
  temperature: f32,
  topP: f32,
  greedy: u32,
  useTopP: u32,
}

override WG: u32 = 256;  // a power of two
override SQ: u32 = 16;   // lanes of the first reduction level: a power of two near sqrt(WG)

const NONE = 0xffffffffu;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> token: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> partials: array<f32, WG>;
var<workgroup> runs: array<f32, SQ>;
var<workgroup> redKey: array<u32, WG>;
var<workgroup> redIdx: array<u32, WG>;
var<workgroup> counters: array<atomic<u32>, 2>;
var<workgroup> pick: atomic<u32>;
var<workgroup> lastKept: atomic<u32>;

// A u32 that orders as the f32 value does: negatives flipped, positives with the sign bit set.
fn orderKey(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// The workgroup's sum of v, identical in every thread: SQ lanes each add a run of WG / SQ partials,
// then every thread adds the SQ run sums in order. Each array is rewritten only after the barrier
// that follows its last read, so two barriers per call suffice.
fn sumF(lid: u32, v: f32) -> f32 {
  partials[lid] = v;
  workgroupBarrier();
  let run = WG / SQ;
  if (lid < SQ) {
    var s = 0.0;
    for (var i = lid * run; i < (lid + 1u) * run; i++) {
      s += partials[i];
    }
    runs[lid] = s;
  }
  workgroupBarrier();
  var total = 0.0;
  for (var r = 0u; r < SQ; r++) {
    total += runs[r];
  }
  return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  let n = params.n;
  // Argmax over keys, lowest index on ties.
  var bestKey = 0u;
  var best = NONE;
  for (var i = lid; i < n; i += WG) {
    let key = orderKey(logits[i]);
    if (best == NONE || key > bestKey) {
      bestKey = key;
      best = i;
    }
  }
  redKey[lid] = bestKey;
  redIdx[lid] = best;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      let k = redKey[lid + stride];
      let j = redIdx[lid + stride];
      let mine = redIdx[lid];
      if (j != NONE && (mine == NONE || k > redKey[lid] || (k == redKey[lid] && j < mine))) {
        redKey[lid] = k;
        redIdx[lid] = j;
      }
    }
    workgroupBarrier();
  }
  let argmax = redIdx[0];
  if (params.greedy != 0u) {
    if (lid == 0u) {
      token[0] = argmax;
    }
    return;
  }
  let maxLogit = logits[argmax];
  let temperature = params.temperature;

  // Top-k: the largest key θ with count(key >= θ) >= topK, i.e. the topK-th largest key. Bits
  // alternate between two counters that only grow, so one barrier per bit suffices: a counter is
  // added to again only after the next bit's barrier, which every reader of it has passed.
  var theta = 0u;
  if (params.topK != 0u) {
    var seen = vec2u(0u, 0u);
    for (var bit = 31i; bit >= 0i; bit--) {
      let cand = theta | (1u << u32(bit));
      let parity = u32(bit) & 1u;
      var c = 0u;
      for (var i = lid; i < n; i += WG) {
        c += select(0u, 1u, orderKey(logits[i]) >= cand);
      }
      atomicAdd(&counters[parity], c);
      workgroupBarrier();
      let now = atomicLoad(&counters[parity]);
      if (now - seen[parity] >= params.topK) {
        theta = cand;
      }
      seen[parity] = now;
    }
  }

  // Top-p: the largest key θ whose kept mass above it reaches topP of the kept mass.
  if (params.useTopP != 0u) {
    let thetaK = theta;
    var keptMass = 0.0;
    for (var i = lid; i < n; i += WG) {
      let x = logits[i];
      if (orderKey(x) >= thetaK) {
        keptMass += exp((x - maxLogit) / temperature);
      }
    }
    let goal = params.topP * sumF(lid, keptMass);
    var thetaP = 0u;
    for (var bit = 31i; bit >= 0i; bit--) {
      let cand = thetaP | (1u << u32(bit));
      let lowest = max(cand, thetaK);
      var mass = 0.0;
      for (var i = lid; i < n; i += WG) {
        let x = logits[i];
        if (orderKey(x) >= lowest) {
          mass += exp((x - maxLogit) / temperature);
        }
      }
      if (sumF(lid, mass) >= goal) {
        thetaP = cand;
      }
    }
    theta = max(thetaK, thetaP);
  }

  // Draw: each thread owns a contiguous chunk; prefix sums of chunk masses find the chunk holding
  // u * total, and that thread walks its chunk.
  let chunk = (n + WG - 1u) / WG;
  let lo = min(lid * chunk, n);
  let hi = min(lo + chunk, n);
  var own = 0.0;
  var ownLast = NONE;
  for (var i = lo; i < hi; i++) {
    let x = logits[i];
    if (orderKey(x) >= theta) {
      let w = exp((x - maxLogit) / temperature);
      own += w;
      if (w > 0.0) {
        ownLast = i;
      }
    }
  }
  if (lid == 0u) {
    atomicStore(&pick, NONE);
    atomicStore(&lastKept, 0u);
  }
  let total = sumF(lid, own);
  if (ownLast != NONE) {
    atomicMax(&lastKept, ownLast);
  }
  // The kept mass in chunks before this one: whole runs, then this run's earlier partials.
  let run = WG / SQ;
  let myRun = lid / run;
  var before = 0.0;
  for (var r = 0u; r < myRun; r++) {
    before += runs[r];
  }
  for (var j = myRun * run; j < lid; j++) {
    before += partials[j];
  }
  let u = f32(pcg(pcg(params.seed) + params.step) >> 8u) * (1.0 / 16777216.0);
  let goal = u * total;
  if (own > 0.0 && before + own >= goal) {
    var cum = before;
    var found = ownLast;
    for (var i = lo; i < hi; i++) {
      let x = logits[i];
      if (orderKey(x) >= theta) {
        let w = exp((x - maxLogit) / temperature);
        cum += w;
        if (w > 0.0 && cum >= goal) {
          found = i;
          break;
        }
      }
    }
    atomicMin(&pick, found);
  }
  workgroupBarrier();
  if (lid == 0u) {
    let p = atomicLoad(&pick);
    token[0] = select(p, atomicLoad(&lastKept), p == NONE);
  }
}
