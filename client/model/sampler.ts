// Choosing the next token from logits: repetition penalty (as Hugging Face applies it), then the
// exact temperature / top-k / top-p / seeded-draw rule of kernels/cpu/sample.ts, which the GPU
// sampler shares.
import { AigridError } from '../../protocol/index.ts';
import { sampleRef } from '../../kernels/cpu/sample.ts';

export interface SamplingOptions {
  /** 0 is greedy; default 1. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** u32; with the step number it fixes each draw, so a replayed generation repeats exactly. */
  seed?: number;
  /** > 1 discourages tokens already in the context; 1 (default) is off. */
  repetitionPenalty?: number;
}

export function checkSampling(options: SamplingOptions): void {
  const { temperature = 1, topK = 0, topP = 1, repetitionPenalty = 1 } = options;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw bad('temperature', temperature, 'a finite number >= 0');
  if (!Number.isInteger(topK) || topK < 0) throw bad('topK', topK, 'an integer >= 0');
  if (!(topP > 0 && topP <= 1)) throw bad('topP', topP, 'in (0, 1]');
  if (!(repetitionPenalty > 0) || !Number.isFinite(repetitionPenalty)) throw bad('repetitionPenalty', repetitionPenalty, 'a finite number > 0');
}

function bad(name: string, value: unknown, want: string): AigridError {
  return new AigridError('ERR_INVALID_ARGUMENT', `${name} must be ${want}, got ${String(value)}`);
}

/** Hugging Face's rule: a seen token's logit is divided by the penalty if positive, else multiplied. */
export function applyRepetitionPenalty(logits: Float32Array, context: readonly number[], penalty: number): Float32Array {
  if (penalty === 1) return logits;
  const out = logits.slice();
  for (const id of new Set(context)) {
    if (id < 0 || id >= out.length) continue;
    const v = out[id]!;
    out[id] = v > 0 ? v / penalty : v * penalty;
  }
  return out;
}

/** The next token for decode step `step`; `context` is every token so far (prompt + generated). */
export function sampleNext(logits: Float32Array, context: readonly number[], step: number, options: SamplingOptions): number {
  for (let i = 0; i < logits.length; i++) {
    if (Number.isNaN(logits[i]!)) throw new AigridError('ERR_INVALID_ARGUMENT', `logit ${i} is NaN: the model produced invalid activations`);
  }
  const penalized = applyRepetitionPenalty(logits, context, options.repetitionPenalty ?? 1);
  return sampleRef(penalized, {
    temperature: options.temperature ?? 1,
    topK: options.topK ?? 0,
    topP: options.topP ?? 1,
    seed: (options.seed ?? 0) >>> 0,
    step: step >>> 0,
  });
}
