// Agreement between three runs of the same work: the rule a client uses to decide who was wrong
// in a spot-check, and the coordinator uses again on the signed evidence of an accusation, so
// both judge by exactly the same numbers.

/** Largest relative L2 difference between two honest runs of the same work (CPU and WebGPU backends meet it). */
export const DEFAULT_VERIFY_TOLERANCE = 0.02;

/**
 * Who is in the minority of three routes, from their pairwise differences (1: the session's own
 * route, 2 and 3: the checked hop swapped for others): 'caught' when 2 and 3 agree and 1 differs,
 * 'replacement-wrong' when 1 and 3 agree and 2 differs. Two agree within the tolerance, and the
 * third differs from both by more than it and by several times as much as the two do from each
 * other; else 'inconclusive' (when another hop on every route is unsteady, a liar adding noise,
 * all three differ by about the same).
 */
export function majority(d12: number, d13: number, d23: number, tolerance: number): 'caught' | 'replacement-wrong' | 'inconclusive' {
  if (minority(d23, d12, d13, tolerance)) return 'caught';
  if (minority(d13, d12, d23, tolerance)) return 'replacement-wrong';
  return 'inconclusive';
}

function minority(pair: number, other1: number, other2: number, tolerance: number): boolean {
  const apart = Math.max(tolerance, MAJORITY_MARGIN * pair);
  return pair <= tolerance && other1 > apart && other2 > apart;
}

/** How many times further the minority must be from each of the two that agree than they are from each other. */
const MAJORITY_MARGIN = 3;

/** The largest relative L2 difference between two runs' outputs, part by part. */
export function difference(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let r = 0; r < a.length; r++) {
    const x = a[r]!;
    const y = b[r]!;
    if (x.length !== y.length) return Infinity;
    let diff = 0;
    let nx = 0;
    let ny = 0;
    for (let i = 0; i < x.length; i++) {
      const d = x[i]! - y[i]!;
      diff += d * d;
      nx += x[i]! * x[i]!;
      ny += y[i]! * y[i]!;
    }
    const rel = Math.sqrt(diff) / Math.max(Math.sqrt(Math.max(nx, ny)), 1e-6);
    if (Number.isNaN(rel)) return Infinity; // a NaN output agrees with nothing
    worst = Math.max(worst, rel);
  }
  return worst;
}
