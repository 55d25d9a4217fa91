// What one evaluation of a policy may use. Limits come from an operator's configuration, so each
// given value is checked against bounds the sandbox can honour.
import { AigridError } from '../protocol/errors.ts';

export interface PolicyLimits {
  /** Wall-clock time of one evaluation (context, top level, eval and its output), in ms. */
  timeMs: number;
  /**
   * Memory an evaluation may take: the engine's WebAssembly memory may grow this much past its
   * initial 16 MiB (which the evaluation may fill too). Set for the whole sandbox, not per policy.
   */
  memoryBytes: number;
  /** QuickJS's own stack limit. Above 64 KiB, deep native recursion (JSON of deeply nested
   * values, parsing) can reach the host's stack first; the sandbox survives that by replacing
   * its engine, but the evaluation is lost. */
  stackBytes: number;
  /** Length of the policy's source text (UTF-16 units). */
  maxSourceLength: number;
  /** Length of the JSON text of parameters, input and context together (UTF-16 units). */
  maxInputLength: number;
  /** Length of the JSON text of eval's result (UTF-16 units). */
  maxOutputLength: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

export const DEFAULT_POLICY_LIMITS: Readonly<PolicyLimits> = Object.freeze({
  timeMs: 50,
  memoryBytes: 16 * MiB,
  stackBytes: 64 * KiB,
  maxSourceLength: 64 * KiB,
  maxInputLength: 256 * KiB,
  maxOutputLength: 256 * KiB,
});

const BOUNDS: { readonly [K in keyof PolicyLimits]: readonly [number, number] } = {
  timeMs: [1, 10_000],
  memoryBytes: [1 * MiB, 256 * MiB],
  stackBytes: [16 * KiB, 256 * KiB],
  maxSourceLength: [1, 1 * MiB],
  maxInputLength: [16, 32 * MiB],
  maxOutputLength: [16, 32 * MiB],
};

/**
 * `base` with `overrides` applied, each checked: an integer within its bounds, and inputs and
 * output that fit the memory. `memoryBytes` only where `scope` is the sandbox (its engines' memory
 * is sized once).
 */
export function policyLimits(base: Readonly<PolicyLimits>, overrides: unknown, scope: 'sandbox' | 'policy'): PolicyLimits {
  if (overrides === undefined) return { ...base };
  if (overrides === null || typeof overrides !== 'object' || Array.isArray(overrides)) {
    throw new AigridError('ERR_INVALID_ARGUMENT', 'policy limits: expected an object');
  }
  const limits = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    if (!Object.hasOwn(BOUNDS, key)) throw new AigridError('ERR_INVALID_ARGUMENT', `policy limits: unknown limit ${JSON.stringify(key)}`);
    const name = key as keyof PolicyLimits;
    if (value === undefined) continue;
    if (name === 'memoryBytes' && scope === 'policy') {
      throw new AigridError('ERR_INVALID_ARGUMENT', 'policy limits: memoryBytes is set for the whole sandbox (PolicySandbox.create)');
    }
    const [min, max] = BOUNDS[name];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `policy limits: ${name} must be an integer from ${min} to ${max}`);
    }
    limits[name] = value;
  }
  // Inputs are copied into the runtime (up to 2 bytes a unit) and the output is built there: an
  // eighth of the heap each leaves the policy room to work.
  const share = Math.floor(limits.memoryBytes / 8);
  if (limits.maxInputLength > share || limits.maxOutputLength > share) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `policy limits: maxInputLength and maxOutputLength may be at most memoryBytes / 8 (${share})`);
  }
  return limits;
}
