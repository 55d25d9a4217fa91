// Request bodies to SDK parameters. The SDK checks the values of the fields it knows; here are the
// checks it cannot make for JSON from the wire (the body's shape, booleans it reads by truthiness),
// a clear refusal of OpenAI features the grid does not have (rather than silently ignoring them),
// and a copy of known fields only, so nothing else in the body reaches the SDK.
import type { ChatCompletionCreateParams, CompletionCreateParams, EmbeddingCreateParams, SamplingParams } from '../sdk/types.ts';
import { ApiError } from './errors.ts';

type Body = Record<string, unknown>;

const SAMPLING_FIELDS = [
  'model', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'seed', 'stop',
  'repetition_penalty', 'presence_penalty', 'frequency_penalty', 'n', 'stream', 'stream_options', 'user',
] as const;

const invalid = (param: string, why: string) => new ApiError(400, `${param} ${why}`, 'ERR_INVALID_ARGUMENT', param);

const empty = (v: unknown) =>
  v === undefined || v === null || v === false || v === 0 || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && Object.keys(v as object).length === 0);

/** OpenAI features the grid lacks: any value but these "off" values is refused. */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  tools: empty,
  functions: empty,
  logprobs: empty,
  top_logprobs: empty,
  logit_bias: empty,
  audio: empty,
  echo: empty,
  suffix: (v) => empty(v) || v === '',
  best_of: (v) => empty(v) || v === 1,
  response_format: (v) => empty(v) || (v as { type?: unknown }).type === 'text',
  modalities: (v) => empty(v) || (Array.isArray(v) && v.every((m) => m === 'text')),
};

function checkBody(body: unknown): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'The body must be a JSON object.', 'ERR_INVALID_ARGUMENT');
  const b = body as Body;
  for (const [field, off] of Object.entries(UNSUPPORTED)) {
    if (Object.hasOwn(b, field) && !off(b[field])) throw invalid(field, 'is not supported by the grid (text generation only); leave it out');
  }
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') throw invalid('stream', 'must be a boolean');
  const options = b.stream_options;
  if (options !== undefined && options !== null) {
    if (typeof options !== 'object' || Array.isArray(options)) throw invalid('stream_options', 'must be an object');
    const usage = (options as Body).include_usage;
    if (usage !== undefined && usage !== null && typeof usage !== 'boolean') throw invalid('stream_options.include_usage', 'must be a boolean');
  }
  if (b.user !== undefined && typeof b.user !== 'string') throw invalid('user', 'must be a string');
  return b;
}

function sampling(b: Body): SamplingParams {
  const out: Body = {};
  for (const field of SAMPLING_FIELDS) if (Object.hasOwn(b, field)) out[field] = b[field];
  return out as unknown as SamplingParams;
}

export function chatParams(body: unknown): ChatCompletionCreateParams {
  const b = checkBody(body);
  if (!Object.hasOwn(b, 'messages')) throw invalid('messages', 'is required: an array of {role, content}');
  return { ...sampling(b), messages: b.messages as ChatCompletionCreateParams['messages'] };
}

export function completionParams(body: unknown): CompletionCreateParams {
  const b = checkBody(body);
  if (!Object.hasOwn(b, 'prompt')) throw invalid('prompt', 'is required: a string');
  // OpenAI also takes a list of prompts; a list of one is the same request as that one prompt.
  const prompt = Array.isArray(b.prompt) && b.prompt.length === 1 && typeof b.prompt[0] === 'string' ? b.prompt[0] : b.prompt;
  if (typeof prompt !== 'string') throw invalid('prompt', 'must be a string (one prompt per request; token ids are not taken)');
  return { ...sampling(b), prompt };
}

/** POST /v1/embeddings: model and input required; only the fields the SDK reads are copied. */
export function embeddingParams(body: unknown): EmbeddingCreateParams {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'The body must be a JSON object.', 'ERR_INVALID_ARGUMENT');
  const b = body as Body;
  if (typeof b.model !== 'string') throw invalid('model', 'is required: the URI of an embedding block');
  if (!Object.hasOwn(b, 'input')) throw invalid('input', 'is required: a string or an array of strings');
  if (b.user !== undefined && typeof b.user !== 'string') throw invalid('user', 'must be a string');
  const out: Body = {};
  for (const field of ['model', 'input', 'encoding_format', 'dimensions', 'user']) if (Object.hasOwn(b, field) && b[field] !== null) out[field] = b[field];
  return out as unknown as EmbeddingCreateParams;
}
