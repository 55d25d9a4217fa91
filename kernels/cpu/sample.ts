// Token sampling: the exact decision rule shared by the GPU sampler (kernels/sample.wgsl) and this
// reference, which is also the CPU backend's sampler.
//
// Given logits x[0..V) (finite f32; mask with a large negative value, not -Infinity or NaN):
//  1. Order. Logits compare through orderKey(): the f32 bit pattern mapped to a u32 that sorts as
//     the value does (-0 sorts just below +0). Both sides compare the same keys, so every
//     comparison between logits is exact and identical on CPU and GPU.
//  2. Greedy. temperature == 0 (or under 2^-126, the smallest normal f32) or topK == 1: the
//     argmax, the lowest index among equal keys.
//  3. Weights. w_i = exp((x_i - x_max) / temperature), proportional to softmax(x / temperature).
//  4. Top-k (0 < topK < V). θk = the topK-th largest key (counted with repeats); keep key_i >= θk,
//     so ties with the k-th are kept. topK == 0 or topK >= V keeps every token.
//  5. Top-p (topP < 1). Among the kept, θp = the largest key θ with Σ{kept, key_i >= θ} w_i >=
//     topP * Σ{kept} w_i: the smallest nucleus from the top that holds topP of the kept mass, with
//     ties of its last member. Keep key_i >= max(θk, θp). The GPU finds θk and θp bit by bit
//     (bisection on the key's 32 bits, a count or a mass each step); no sort is needed.
//  6. Draw. h = pcg(pcg(seed) + step) (u32 wrap-around), u = (h >>> 8) * 2^-24 in [0, 1), exact in
//     f32. The token is the first kept index i with w_i > 0, in ascending index order, whose
//     cumulative kept weight through i is >= u * (total kept weight).
// The GPU computes weights and masses in f32, this reference in f64: the decision differs only when
// a mass or the draw lands within rounding of a boundary.
import { AigridError } from '../../protocol/index.ts';

export interface SampleOptions {
  /** 0 picks the argmax; default 1. */
  temperature?: number;
  /** Keep the k most likely tokens (ties included); 0 (default) keeps all. */
  topK?: number;
  /** Nucleus mass in (0, 1]; 1 (default) keeps all. */
  topP?: number;
  /** u32 seed of the session; default 0. */
  seed?: number;
  /** u32 decode step; with seed it fixes the draw. Default 0. */
  step?: number;
}

export type ResolvedSampleOptions = Required<SampleOptions>;

const U32_MAX = 0xffffffff;
const MIN_NORMAL_F32 = 2 ** -126;

/** Defaults filled in; out-of-range options are ERR_INVALID_ARGUMENT (same checks on CPU and GPU). */
export function resolveSampleOptions(options: SampleOptions): ResolvedSampleOptions {
  const o = {
    temperature: options.temperature ?? 1,
    topK: options.topK ?? 0,
    topP: options.topP ?? 1,
    seed: options.seed ?? 0,
    step: options.step ?? 0,
  };
  const bad = (what: string) => new AigridError('ERR_INVALID_ARGUMENT', `sample: ${what}`);
  if (!Number.isFinite(o.temperature) || o.temperature < 0) throw bad(`temperature must be finite and >= 0, got ${o.temperature}`);
  if (!(o.topP > 0 && o.topP <= 1)) throw bad(`topP must be in (0, 1], got ${o.topP}`);
  for (const name of ['topK', 'seed', 'step'] as const) {
    const value = o[name];
    if (!Number.isInteger(value) || value < 0 || value > U32_MAX) throw bad(`${name} must be an integer in [0, ${U32_MAX}], got ${value}`);
  }
  return o;
}

/** Greedy: temperature 0 (or below the smallest normal f32, which GPUs flush to 0) or topK 1. */
export function isGreedy(o: ResolvedSampleOptions): boolean {
  return o.temperature < MIN_NORMAL_F32 || o.topK === 1;
}

/** The PCG hash (RXS-M-XS output of one LCG step), a bijection on u32. */
export function pcg(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The draw u in [0, 1): 24 bits of pcg(pcg(seed) + step), times 2^-24. */
export function sampleUniform(seed: number, step: number): number {
  const h = pcg((pcg(seed) + step) >>> 0);
  return (h >>> 8) * 2 ** -24;
}

const f32 = new Float32Array(1);
const bits = new Uint32Array(f32.buffer);

/** A u32 that orders as the f32 value does: negatives flipped, positives with the sign bit set. */
export function orderKey(x: number): number {
  f32[0] = x;
  const b = bits[0]!;
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}

export function argmaxRef(logits: Float32Array): number {
  // orderKey of each logit, read straight from its bits (a decode step scans a whole vocabulary).
  const bitsOf = new Uint32Array(logits.buffer, logits.byteOffset, logits.length);
  let best = 0;
  let bestKey = -1;
  for (let i = 0; i < bitsOf.length; i++) {
    const b = bitsOf[i]!;
    const key = (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
    if (key > bestKey) {
      best = i;
      bestKey = key;
    }
  }
  return best;
}

/** Each token's weight w_i if it is kept, else 0 (greedy: 1 at the argmax). */
export function keptWeights(logits: Float32Array, options: SampleOptions = {}): Float64Array {
  const o = resolveSampleOptions(options);
  const n = logits.length;
  if (n === 0) throw new AigridError('ERR_INVALID_ARGUMENT', 'sample: no logits');
  const best = argmaxRef(logits);
  if (isGreedy(o)) {
    const onehot = new Float64Array(n);
    onehot[best] = 1;
    return onehot;
  }
  const keys = Uint32Array.from(logits, orderKey);
  const max = logits[best]!;
  const w = Float64Array.from(logits, (x) => Math.exp((x - max) / o.temperature));
  // Indices from the largest key down; equal keys are kept or dropped together.
  const order = Array.from(keys.keys()).sort((a, b) => keys[b]! - keys[a]! || a - b);
  let threshold = 0;
  if (o.topK > 0 && o.topK < n) threshold = keys[order[o.topK - 1]!]!;
  if (o.topP < 1) {
    let kept = 0;
    for (let i = 0; i < n; i++) if (keys[i]! >= threshold) kept += w[i]!;
    const target = o.topP * kept;
    let mass = 0;
    for (let r = 0; r < n; r++) {
      const key = keys[order[r]!]!;
      mass += w[order[r]!]!;
      const lastOfTies = r + 1 === n || keys[order[r + 1]!]! !== key;
      if (lastOfTies && mass >= target) {
        threshold = Math.max(threshold, key);
        break;
      }
    }
  }
  for (let i = 0; i < n; i++) if (keys[i]! < threshold) w[i] = 0;
  return w;
}

/** The distribution the draw follows: kept weights over their sum. */
export function sampleDistribution(logits: Float32Array, options: SampleOptions = {}): Float64Array {
  const w = keptWeights(logits, options);
  const total = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / total);
}

/** The sampled token: the CPU backend's sampler and the reference for SampleOp. */
export function sampleRef(logits: Float32Array, options: SampleOptions = {}): number {
  const o = resolveSampleOptions(options);
  // Greedy: the one kept weight is the argmax's, which every draw picks.
  if (isGreedy(o)) {
    if (logits.length === 0) throw new AigridError('ERR_INVALID_ARGUMENT', 'sample: no logits');
    return argmaxRef(logits);
  }
  const w = keptWeights(logits, o);
  let total = 0;
  for (const x of w) total += x;
  const target = sampleUniform(o.seed, o.step) * total;
  let cum = 0;
  let last = 0;
  for (let i = 0; i < w.length; i++) {
    if (w[i] === 0) continue;
    cum += w[i]!;
    last = i;
    if (cum >= target) return i;
  }
  return last;
}
