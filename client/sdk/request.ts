// OpenAI request fields to the grid's generation options, with a named error for each field that
// is out of range or asks for something the grid does not do.
import { AigridError } from '../../protocol/index.ts';
import type { ChatMessageParam, SamplingParams } from './types.ts';

export const DEFAULT_MAX_TOKENS = 256;
const MAX_STOPS = 4;

/** How one generation samples, every field resolved. */
export interface SamplingValues {
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  repetitionPenalty: number;
}

export interface Sampling extends SamplingValues {
  stops: string[];
  /** max_tokens was not given: the default, which shrinks to the room left in the context. */
  defaultMaxTokens: boolean;
}

const bad = (field: string, why: string) => new AigridError('ERR_INVALID_ARGUMENT', `${field} ${why}`);
/** A received value as a message shows it: String() of a deeply nested array recurses past the stack. */
const shown = (v: unknown) => (typeof v === 'object' && v !== null ? (Array.isArray(v) ? 'an array' : 'an object') : String(v).slice(0, 100));

export function samplingOf(params: SamplingParams): Sampling {
  if (typeof params.model !== 'string' || !params.model) throw bad('model', 'must name a model served on the network (see models.list())');
  const maxTokens = params.max_completion_tokens ?? params.max_tokens ?? DEFAULT_MAX_TOKENS;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw bad('max_tokens', `must be a positive integer, got ${shown(maxTokens)}`);
  const temperature = params.temperature ?? 1;
  if (typeof temperature !== 'number' || !(temperature >= 0 && temperature <= 2)) throw bad('temperature', `must be in [0, 2], got ${shown(temperature)}`);
  const topP = params.top_p ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw bad('top_p', `must be in (0, 1], got ${shown(topP)}`);
  const topK = params.top_k ?? 0;
  if (!Number.isInteger(topK) || topK < 0) throw bad('top_k', `must be an integer >= 0, got ${shown(topK)}`);
  const penalty = params.repetition_penalty ?? 1;
  if (typeof penalty !== 'number' || !(penalty > 0) || !Number.isFinite(penalty)) throw bad('repetition_penalty', `must be a number > 0, got ${shown(penalty)}`);
  for (const field of ['presence_penalty', 'frequency_penalty'] as const) {
    const v = params[field];
    if (v !== undefined && v !== null && v !== 0) throw bad(field, 'is not supported (only 0); use repetition_penalty');
  }
  if (params.n !== undefined && params.n !== null && params.n !== 1) throw bad('n', 'must be 1; send several requests for several replies');
  const seed = params.seed ?? (temperature === 0 ? 0 : Math.floor(Math.random() * 0x1_0000_0000));
  if (!Number.isInteger(seed)) throw bad('seed', `must be an integer, got ${shown(seed)}`);
  const stop = params.stop ?? [];
  const stops = typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(stops) || stops.length > MAX_STOPS || stops.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw bad('stop', `must be a non-empty string or up to ${MAX_STOPS} of them`);
  }
  const defaultMaxTokens = (params.max_completion_tokens ?? params.max_tokens) == null;
  return { maxTokens, temperature, topK, topP, seed: seed >>> 0, repetitionPenalty: penalty, stops, defaultMaxTokens };
}

/** The default max_tokens leaves room for the prompt, as OpenAI's does; an explicit one is kept. */
export function fitToContext(sampling: Sampling, promptTokens: number, context: number): Sampling {
  if (!sampling.defaultMaxTokens) return sampling;
  const room = context - promptTokens;
  if (room < 1) throw bad('messages', `(${promptTokens} tokens) fill the model's context of ${context}; shorten the prompt`);
  return { ...sampling, maxTokens: Math.min(sampling.maxTokens, room) };
}

/** Chat messages with their content as plain text (OpenAI's text parts are joined). */
export function textMessages(messages: ChatMessageParam[]): { role: string; content: string }[] {
  if (!Array.isArray(messages) || messages.length === 0) throw bad('messages', 'must be a non-empty array');
  return messages.map((m, i) => {
    if (!m || typeof m.role !== 'string') throw bad(`messages[${i}].role`, 'must be a string');
    const { content } = m;
    if (content === null || content === undefined) return { role: m.role, content: '' };
    if (typeof content === 'string') return { role: m.role, content };
    if (!Array.isArray(content)) throw bad(`messages[${i}].content`, 'must be a string or an array of text parts');
    const parts = content.map((part, j) => {
      if (part?.type !== 'text' || typeof part.text !== 'string') throw bad(`messages[${i}].content[${j}]`, 'must be a text part (the grid serves text models)');
      return part.text;
    });
    return { role: m.role, content: parts.join('') };
  });
}

export function checkPrompt(prompt: unknown): string {
  if (typeof prompt !== 'string') throw bad('prompt', 'must be a string');
  if (prompt.length === 0) throw bad('prompt', 'must not be empty');
  return prompt;
}
