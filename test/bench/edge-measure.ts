// What bench:edge measures and how, shared by its Node runners (edge.ts) and its page comparison
// (edge-page-run.ts): greedy generation with a timestamp per token, runners taking turns run by run,
// medians, and the machine's CPU pressure.
import { readFileSync } from 'node:fs';

// ---- runners: greedy generation with a timestamp per token ----

export interface Generation {
  tokens: number[];
  /** at[0]: start; at[i + 1]: when token i was chosen. */
  at: number[];
}

export interface Runner {
  generate(prompt: readonly number[], newTokens: number): Promise<Generation>;
  close(): Promise<void>;
}

// ---- measurement ----

/**
 * The share of the last 10 s in which runnable tasks waited for a CPU (Linux PSI), as a percentage;
 * undefined elsewhere. Other work on the machine hurts multi-threaded runs most: each step waits
 * at a barrier for its slowest thread.
 */
export function cpuPressure(): number | undefined {
  try {
    const m = /^some avg10=([\d.]+)/m.exec(readFileSync('/proc/pressure/cpu', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** A warning line when other processes compete for the CPU (figures with 2+ threads suffer most). */
export function pressureNote(when: string): string {
  const p = cpuPressure();
  if (p === undefined) return `${when}: CPU pressure unknown (no /proc/pressure/cpu)`;
  return `${when}: CPU pressure ${p.toFixed(0)}% (tasks waiting for a core)${p > 20 ? ' — the machine is busy with other work: multi-threaded figures are unreliable' : ''}`;
}

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
export const geomean = (xs: readonly number[]): number | null => (xs.length ? Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length) : null);
export const round = (x: number | null | undefined, d = 2): number | null => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(d)));

/** Prompt ids spread over the vocabulary below the special tokens (the same for every runner). */
export const promptIds = (n: number, vocab: number, salt = 0): number[] => Array.from({ length: n }, (_, i) => (7 + (i + salt) * 7919) % (vocab - 8));

export interface Figures {
  decodeTokS: number;
  prefillTokS: number;
  /** CPU time over wall time while decoding: the cores the runner kept busy. */
  decodeCores: number;
  tokens: number[];
}

/**
 * Decode tok/s (the tokens after the first, over their span) and prefill tok/s (prompt to first
 * token) of each runner, medians of `runs`. The runners take turns run by run, so load from
 * elsewhere on the machine falls on all of them alike.
 */
export async function measureTurns(runners: readonly Runner[], vocab: number, runs: number, decode: number, prefill: number): Promise<Figures[]> {
  const shortPrompt = promptIds(16, vocab);
  for (const runner of runners) await runner.generate(shortPrompt, 2); // warm-up: first-pass allocations, JIT, threads
  const decodes = runners.map((): number[] => []);
  const cores = runners.map((): number[] => []);
  const prefills = runners.map((): number[] => []);
  const tokens = runners.map((): number[] => []);
  for (let r = 0; r < runs; r++) {
    for (const [i, runner] of runners.entries()) {
      const cpu = process.cpuUsage();
      const g = await runner.generate(shortPrompt, decode + 1);
      const used = process.cpuUsage(cpu);
      decodes[i]!.push(decode / ((g.at.at(-1)! - g.at[1]!) / 1000));
      cores[i]!.push((used.user + used.system) / 1000 / (g.at.at(-1)! - g.at[0]!));
      tokens[i] = g.tokens;
      const p = await runner.generate(promptIds(prefill, vocab, 1 + r), 1);
      prefills[i]!.push(prefill / ((p.at[1]! - p.at[0]!) / 1000));
    }
  }
  return runners.map((_, i) => ({ decodeTokS: median(decodes[i]!), prefillTokS: median(prefills[i]!), decodeCores: median(cores[i]!), tokens: tokens[i]! }));
}

/** How many leading tokens two greedy runs share (quantized dot products differ, so they part at some point). */
export const agreement = (a: readonly number[], b: readonly number[]) => {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
};
