// Shared by every kernel case: seeded inputs, allclose, and the outcome format. Runs in Node and
// in the browser test page alike (no Node or vitest imports here).
import { AigridError } from '../../protocol/index.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { mulberry32 } from '../helpers/random.ts';

export interface CaseOutcome {
  ok: boolean;
  detail: string;
}

export interface KernelCase {
  name: string;
  run(ctx: GpuContext): Promise<CaseOutcome>;
}

/** Tolerances per dtype path (absolute, relative). */
export const TOL = {
  f32: { atol: 1e-4, rtol: 1e-4 },
  f16: { atol: 2e-3, rtol: 2e-3 },
  q8: { atol: 1e-3, rtol: 1e-3 },
  q4: { atol: 1e-3, rtol: 1e-3 },
} as const;

/** Seeded uniform floats in [lo, hi). */
export function randomFloats(seed: number, n: number, lo = -1, hi = 1): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rand();
  return out;
}

/** |got - want| <= atol + rtol * |want| everywhere, and no NaN; reports the worst element. */
export function allclose(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number): CaseOutcome {
  if (got.length !== want.length) return { ok: false, detail: `length ${got.length} != ${want.length}` };
  let worst = -1;
  let worstExcess = 0;
  let maxAbs = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (Number.isNaN(g) !== Number.isNaN(w)) return { ok: false, detail: `NaN mismatch at ${i}: got ${g}, want ${w}` };
    const diff = Math.abs(g - w);
    maxAbs = Math.max(maxAbs, diff);
    const excess = diff - (atol + rtol * Math.abs(w));
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst >= 0) return { ok: false, detail: `at ${worst}: got ${got[worst]}, want ${want[worst]} (max |diff| ${maxAbs})` };
  return { ok: true, detail: `max |diff| ${maxAbs.toExponential(2)} over ${want.length}` };
}

/** Runs fn and expects a named AigridError with this code. */
export async function expectCode(code: string, fn: () => unknown): Promise<CaseOutcome> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof AigridError && err.code === code) return { ok: true, detail: `${code}: ${err.message}` };
    return { ok: false, detail: `expected ${code}, got ${(err as Error).name} ${(err as AigridError).code ?? ''}: ${(err as Error).message}` };
  }
  return { ok: false, detail: `expected ${code}, but no error` };
}

/** Combines several outcomes; the first failure wins. */
export function all(outcomes: CaseOutcome[]): CaseOutcome {
  const bad = outcomes.find((o) => !o.ok);
  return bad ?? { ok: true, detail: outcomes.map((o) => o.detail).join('; ') };
}

/** Runs one encoder's worth of work and submits it. */
export function submit(ctx: GpuContext, record: (encoder: GPUCommandEncoder) => void): void {
  const encoder = ctx.encoder();
  record(encoder);
  ctx.submit(encoder);
}
