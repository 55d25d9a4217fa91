// The generation loop, independent of where the layers run: in this process (Shards) or along a
// chain of peers. The head (embedding, final norm, LM head) and the sampler stay with the caller.
import { AigridError } from '../../protocol/index.ts';
import { checkSampling, sampleNext, type SamplingOptions } from './sampler.ts';

/** Runs every transformer layer for T tokens of one session: hidden [T, H] -> [T, H]. */
export type LayerChain = (hidden: Float32Array, positions: Uint32Array, sessionId: string) => Promise<Float32Array>;

export interface HeadLike {
  embed(tokens: Uint32Array, positions: Uint32Array): Promise<Float32Array>;
  /** Logits [V] of the last of `tokens` rows of hidden. */
  logits(hidden: Float32Array, tokens: number): Promise<Float32Array>;
}

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  /** Token ids that end the generation (the model's eos ids are usually among them). */
  stopTokens?: readonly number[];
  sessionId: string;
  signal?: AbortSignal;
  /** Called with each new token as soon as it is chosen. */
  onToken?: (token: number, step: number) => void;
  /** Keeps every step's logits in the result (tests compare them with a reference). */
  keepLogits?: boolean;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface GenerateResult {
  tokens: number[];
  finishReason: FinishReason;
  logits?: Float32Array[];
}

export async function generate(head: HeadLike, layers: LayerChain, prompt: readonly number[], options: GenerateOptions): Promise<GenerateResult> {
  checkSampling(options);
  if (prompt.length === 0) throw new AigridError('ERR_INVALID_ARGUMENT', 'the prompt has no tokens');
  if (!Number.isInteger(options.maxTokens) || options.maxTokens < 1) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `maxTokens must be a positive integer, got ${options.maxTokens}`);
  }
  const stop = new Set(options.stopTokens ?? []);
  const context = [...prompt];
  const tokens: number[] = [];
  const logitsKept: Float32Array[] = [];
  let pending = Uint32Array.from(prompt);
  let position = 0;
  for (let step = 0; step < options.maxTokens; step++) {
    if (options.signal?.aborted) return { tokens, finishReason: 'abort', logits: options.keepLogits ? logitsKept : undefined };
    const positions = Uint32Array.from({ length: pending.length }, (_, i) => position + i);
    const hidden = await layers(await head.embed(pending, positions), positions, options.sessionId);
    const logits = await head.logits(hidden, pending.length);
    if (options.keepLogits) logitsKept.push(logits);
    position += pending.length;
    const token = sampleNext(logits, context, step, options);
    tokens.push(token);
    context.push(token);
    options.onToken?.(token, step);
    if (stop.has(token)) return { tokens, finishReason: 'stop', logits: options.keepLogits ? logitsKept : undefined };
    pending = Uint32Array.of(token);
  }
  return { tokens, finishReason: 'length', logits: options.keepLogits ? logitsKept : undefined };
}
