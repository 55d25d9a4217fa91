// What every hook that runs a policy shares (route, placement, admission, quota, vDAG pre- and
// post-processing): a policy that fails changes nothing but "the default was used", and each
// failure is counted and logged.
import { AigridError, errorMessage, type ErrorCode } from '../protocol/errors.ts';
import type { Policy } from './sandbox.ts';

export type PolicyFailureReport = (error: AigridError, policy: Policy) => void;

/**
 * `run(policy)` when there is a policy, else `fallback()`. When run throws (the policy failed or
 * hit a limit, or its output did not validate: a validator should throw ERR_POLICY_OUTPUT, and
 * anything else it throws is reported as that), `onFailure` hears of it and `fallback()` decides.
 * What fallback throws is the hook's own failure and propagates.
 */
export function withFallback<T>(
  policy: Policy | undefined,
  run: (policy: Policy) => T,
  fallback: () => T,
  onFailure: PolicyFailureReport,
): T {
  if (policy === undefined) return fallback();
  try {
    return run(policy);
  } catch (err) {
    const error = err instanceof AigridError ? err : new AigridError('ERR_POLICY_OUTPUT', `policy ${JSON.stringify(policy.name)}: ${errorMessage(err)}`, { cause: err });
    try {
      onFailure(error, policy);
    } catch {
      // A report that fails must not become the hook's failure.
    }
  }
  return fallback();
}

export interface PolicyFailureCount {
  policy: string;
  code: ErrorCode;
  count: number;
}

export interface PolicyFailuresOptions {
  /** At most one log line per policy this often; the lines skipped are counted in the next (default 10 s). */
  logEveryMs?: number;
  now?: () => number;
}

/** Failures by policy name and code, for a metrics module; `report` is a withFallback onFailure. */
export class PolicyFailures {
  private readonly counts = new Map<string, Map<ErrorCode, number>>();
  private readonly logged = new Map<string, { at: number; skipped: number }>();
  private readonly logEveryMs: number;
  private readonly now: () => number;

  constructor(
    private readonly log: (line: string) => void,
    options: PolicyFailuresOptions = {},
  ) {
    this.logEveryMs = options.logEveryMs ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  readonly report: PolicyFailureReport = (error, policy) => {
    const byCode = this.counts.get(policy.name) ?? new Map<ErrorCode, number>();
    byCode.set(error.code, (byCode.get(error.code) ?? 0) + 1);
    this.counts.set(policy.name, byCode);
    // A policy that fails on every call must not flood the log.
    const now = this.now();
    const last = this.logged.get(policy.name);
    if (last && now - last.at < this.logEveryMs) {
      last.skipped++;
      return;
    }
    const skipped = last?.skipped ? ` (${last.skipped} more since the last line)` : '';
    this.logged.set(policy.name, { at: now, skipped: 0 });
    // The message carries the policy's own words: JSON-quoted, it stays one line.
    this.log(`policy ${JSON.stringify(policy.name)} failed, the default was used: ${error.code} ${JSON.stringify(error.message)}${skipped}`);
  };

  /** Failures of one policy, all codes together. */
  count(policy: string): number {
    let total = 0;
    for (const n of this.counts.get(policy)?.values() ?? []) total += n;
    return total;
  }

  snapshot(): PolicyFailureCount[] {
    const rows: PolicyFailureCount[] = [];
    for (const [policy, byCode] of this.counts) for (const [code, count] of byCode) rows.push({ policy, code, count });
    return rows;
  }

  /** Drops a policy that was removed, so names that come and go do not accumulate. */
  forget(policy: string): void {
    this.counts.delete(policy);
    this.logged.delete(policy);
  }
}
