// The SDK's request and response shapes. Requests and responses follow OpenAI's chat and
// completions APIs field for field, so code written for OpenAI (or WebLLM's engine) reads them
// unchanged; `aigrid` fields add what only a grid knows (the route and the speed).
import type { Hop, ModelSpec } from '../../protocol/index.ts';

export type Role = 'system' | 'user' | 'assistant' | 'developer' | 'tool';

export interface ChatMessageParam {
  role: Role | string;
  /** Text, or OpenAI's content parts (text parts only). */
  content: string | { type: 'text'; text: string }[] | null;
  name?: string;
}

/** Sampling fields shared by chat and text completions. */
export interface SamplingParams {
  model: string;
  /** Most tokens to generate (default 256); max_completion_tokens is accepted too. */
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  /** 0 is greedy (default 1, as OpenAI). */
  temperature?: number | null;
  top_p?: number | null;
  /** Not in OpenAI's API; 0 (default) is off. */
  top_k?: number | null;
  /** Fixes the draws: the same seed and request give the same text. */
  seed?: number | null;
  /** Up to 4 strings; the text ends before the first one generated. */
  stop?: string | string[] | null;
  /** Hugging Face's repetition penalty; 1 (default) is off. */
  repetition_penalty?: number | null;
  /** Only 0 is supported (the grid has no presence/frequency penalties). */
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  /** Only 1 is supported. */
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  user?: string;
}

export interface ChatCompletionCreateParams extends SamplingParams {
  messages: ChatMessageParam[];
}

export interface CompletionCreateParams extends SamplingParams {
  prompt: string;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** What the grid adds to a reply: which peer served which layers, and how fast. */
export interface GridReplyInfo {
  route: Hop[];
  /** Decode tokens per second (prefill excluded). */
  tokensPerSecond: number;
  /** Routes abandoned for failed peers during this reply. */
  failovers: number;
  /** Seconds from the request to the first token. */
  timeToFirstTokenS: number;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: number; message: { role: 'assistant'; content: string; refusal: null }; logprobs: null; finish_reason: FinishReason }[];
  usage: Usage;
  system_fingerprint: string;
  aigrid: GridReplyInfo;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: number; delta: { role?: 'assistant'; content?: string }; logprobs: null; finish_reason: FinishReason | null }[];
  system_fingerprint: string;
  usage?: Usage | null;
  /** On the chunk with the finish_reason. */
  aigrid?: GridReplyInfo;
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: number; text: string; logprobs: null; finish_reason: FinishReason }[];
  usage: Usage;
  system_fingerprint: string;
  aigrid: GridReplyInfo;
}

export interface CompletionChunk {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: number; text: string; logprobs: null; finish_reason: FinishReason | null }[];
  system_fingerprint: string;
  usage?: Usage | null;
  aigrid?: GridReplyInfo;
}

/** A streamed reply: iterate it for chunks; `controller.abort()` stops it on every peer. */
export interface Stream<T> extends AsyncIterable<T> {
  readonly controller: AbortController;
}

export type ModelHealth = 'ready' | 'under-replicated' | 'loading' | 'unavailable';

export interface ModelInfo {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  /**
   * ready: every layer is ready on as many peers as the replication asks; under-replicated: every
   * layer on at least one; loading: some layer has peers assigned but none ready; unavailable: not.
   */
  health: ModelHealth;
  coverage: {
    layers: number;
    replication: number;
    /** Per layer: peers assigned, and those of them ready. */
    assigned: number[];
    ready: number[];
  };
  /** Whether light clients (token ids in, logits out) are served. */
  light: boolean;
  spec: ModelSpec;
}

export interface ModelList {
  object: 'list';
  data: ModelInfo[];
}

/** grid.generate(): token ids in and out, no chat template or text decoding. */
export interface GenerateParams {
  model: string;
  /** Token ids, or text to encode with the model's tokenizer (special tokens added as it says). */
  prompt: number[] | string;
  maxTokens: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  repetitionPenalty?: number;
  /** Defaults to the model's end-of-sequence ids; [] generates to maxTokens. */
  stopTokens?: number[];
  onToken?: (token: number, step: number) => void;
  signal?: AbortSignal;
}

export interface GenerateOutput {
  tokens: number[];
  promptTokens: number;
  finishReason: FinishReason;
  aigrid: GridReplyInfo;
}

/** Credits (grid.credits): a key's balance with the network's mode and prices. */
export type { CreditCalls, CreditStatement } from './credits-calls.ts';
export type { CreditBalance, CreditMode, CreditRules } from '../../protocol/index.ts';

/** OpenAI's embeddings request, over a feature-extraction pipeline block of the network. */
export interface EmbeddingCreateParams {
  /** The block's URI (`embedding.minilm:1`) or the model id it is served under (`block/...`). */
  model: string;
  /** A text or up to 64 texts (token arrays are not taken: the block tokenizes). */
  input: string | string[];
  /** 'float' (default) or 'base64' (little-endian float32, as OpenAI's clients ask by default). */
  encoding_format?: 'float' | 'base64';
  /** Only the block's own width is supported. */
  dimensions?: number;
  user?: string;
}

export interface Embedding {
  object: 'embedding';
  index: number;
  embedding: number[] | string;
}

export interface CreateEmbeddingResponse {
  object: 'list';
  data: Embedding[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
  /** The replica that computed them. */
  aigrid: { peerId: string };
}

/** What a pipeline block gives for texts: embeddings or labels, per text. */
export interface BlockRunResult {
  embeddings?: number[][];
  labels?: { label: string; score: number }[][];
  tokens: number;
  peerId: string;
}
