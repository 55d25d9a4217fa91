// The generation loop, independent of where the model runs: a TokenModel takes a step's token ids
// and answers the last token's logits. Usually the caller's head embeds and computes the logits
// around layers that run here (Shards) or along a route of peers (withHead); a route of peers may
// also run the whole model (grid/remote-model.ts). The sampler always stays with the caller.
import { AigridError } from '../../protocol/index.ts';
import { checkSampling, sampleNext, type SamplingOptions } from './sampler.ts';

/** Runs every transformer layer for T tokens of one session: hidden [T, H] -> [T, H]. */
export type LayerChain = (hidden: Float32Array, positions: Uint32Array, sessionId: string) => Promise<Float32Array>;

/** The whole model for T tokens of one session: token ids -> the last token's logits [V]. */
export type TokenModel = (tokens: Uint32Array, positions: Uint32Array, sessionId: string) => Promise<Float32Array>;

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

/** A model made of the caller's head (embedding, final norm, LM head) around a chain of layers. */
export function withHead(head: HeadLike, layers: LayerChain): TokenModel {
  return async (tokens, positions, sessionId) => head.logits(await layers(await head.embed(tokens, positions), positions, sessionId), tokens.length);
}

export async function generate(model: TokenModel, prompt: readonly number[], options: GenerateOptions): Promise<GenerateResult> {
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
    const logits = await model(pending, positions, options.sessionId);
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
