// Causal attention of T query rows against a KV cache: one workgroup per (head, query token, key
// split). Keys stream through in tiles of WG: each thread scores one key, a tree reduction gives the
// tile's max, and the tile's probabilities (kept in shared memory) weight the V rows under an online
// softmax, so any context length runs in the same small shared memory.
// With one split the workgroup writes the normalized output row; with several (decode) each writes
// its partial (max, sum, unnormalized row) and attention-combine.wgsl merges them.
// The cache is read as words (kv-cache.ts): f32 bits, or with F16 two halves per word, each row
// padded to a whole word.

struct Params {
  T: u32,
  heads: u32,
  group: u32,     // heads per kv head (GQA)
  maxSeq: u32,
  startPos: u32,  // absolute position of query row 0
  splits: u32,
  chunk: u32,     // keys per split, a multiple of WG
  scale: f32,
  window: u32,    // sliding window (query p sees keys p - window + 1 .. p); 0: none
  softcap: f32,   // Gemma 2: score = softcap * tanh(score / softcap); 0: none
}

override WG: u32 = 64;   // threads, and keys per tile; a power of two
override HD: u32 = 64;   // head dim
override DG: u32 = 64;   // dim lanes when weighting V: min(HD, WG)
override KG: u32 = 1;    // key groups when weighting V: WG / DG
override ACC: u32 = 64;  // KG * HD
override F16: bool = false;  // the cache holds packed halves
override RW: u32 = 64;   // words per cached row: HD, or ceil(HD / 2) with F16

// Finite stand-in for -inf (WGSL does not promise infinities): exp(NEG_BIG - m) is 0.
const NEG_BIG = -3.0e38;

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kCache: array<u32>;
@group(0) @binding(2) var<storage, read> vCache: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

var<workgroup> qs: array<f32, HD>;
var<workgroup> ps: array<f32, WG>;
var<workgroup> red: array<f32, WG>;
var<workgroup> acc: array<f32, ACC>;

// Element d of cached row `row` of V.
fn vAt(row: u32, d: u32) -> f32 {
  if (F16) {
    return unpack2x16float(vCache[row * RW + d / 2u])[d & 1u];
  }
  return bitcast<f32>(vCache[row * RW + d]);
}

// qs · K[row]: one load per word, summed in d order either way.
fn dotK(row: u32) -> f32 {
  let base = row * RW;
  var dot = 0.0;
  if (F16) {
    for (var w = 0u; w < HD / 2u; w++) {
      let pair = unpack2x16float(kCache[base + w]);
      dot += qs[2u * w] * pair.x;
      dot += qs[2u * w + 1u] * pair.y;
    }
    if (HD % 2u == 1u) {
      dot += qs[HD - 1u] * unpack2x16float(kCache[base + HD / 2u]).x;
    }
  } else {
    for (var d = 0u; d < HD; d++) {
      dot += qs[d] * bitcast<f32>(kCache[base + d]);
    }
  }
  return dot;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t = wid.y;
  let s = wid.z;
  let row = t * params.heads + h;
  for (var d = lid; d < HD; d += WG) {
    qs[d] = q[row * HD + d] * params.scale;
  }
  for (var i = lid; i < ACC; i += WG) {
    acc[i] = 0.0;
  }
  // Causal: query t sits at startPos + t and sees keys 0 .. startPos + t, or with a sliding
  // window only the last `window` of them. A split wholly before the window scores no key and
  // leaves (max, sum) = (NEG_BIG, 0), which the combine weighs by 0.
  let n = params.startPos + t + 1u;
  let start = min(s * params.chunk, n);
  let k1 = min(start + params.chunk, n);
  let lo = select(0u, n - params.window, params.window > 0u && n > params.window);
  let k0 = min(max(start, lo), k1);
  let kvBase = (h / params.group) * params.maxSeq;
  let lane = lid % DG;
  let g = lid / DG;
  var m = NEG_BIG;
  var l = 0.0;  // this thread's share of the softmax denominator
  workgroupBarrier();

  for (var base = k0; base < k1; base += WG) {
    let key = base + lid;
    var score = NEG_BIG;
    if (key < k1) {
      let dot = dotK(kvBase + key);
      score = dot;
      if (params.softcap > 0.0) {
        // q was scaled on the way in, so dot is the scaled score the cap applies to.
        // tanh is 1 in f32 from 9.1 on; the clamp keeps adapters that compute it through exp
        // from inf / inf = NaN on large scores.
        score = params.softcap * tanh(clamp(dot / params.softcap, -15.0, 15.0));
      }
    }
    red[lid] = score;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
      if (lid < stride) {
        red[lid] = max(red[lid], red[lid + stride]);
      }
      workgroupBarrier();
    }
    let mNew = max(m, red[0]);
    let alpha = exp(m - mNew);
    var p = 0.0;
    if (key < k1) {
      p = exp(score - mNew);
    }
    ps[lid] = p;
    l = l * alpha + p;
    m = mNew;
    workgroupBarrier();
    // Each key group rescales its own accumulators and adds its keys' share of the tile.
    let count = min(WG, k1 - base);
    if (g < KG) {
      for (var d = lane; d < HD; d += DG) {
        var a = acc[g * HD + d] * alpha;
        for (var j = g; j < count; j += KG) {
          a += ps[j] * vAt(kvBase + base + j, d);
        }
        acc[g * HD + d] = a;
      }
    }
  }

  red[lid] = l;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      red[lid] += red[lid + stride];
    }
    workgroupBarrier();
  }
  let sum = red[0];
  let partial = (row * params.splits + s) * (HD + 2u);
  for (var d = lid; d < HD; d += WG) {
    var o = 0.0;
    for (var gg = 0u; gg < KG; gg++) {
      o += acc[gg * HD + d];
    }
    if (params.splits == 1u) {
      dst[row * HD + d] = o / sum;
    } else {
      dst[partial + 2u + d] = o;
    }
  }
  if (params.splits > 1u && lid == 0u) {
    dst[partial] = m;
    dst[partial + 1u] = sum;
  }
}
