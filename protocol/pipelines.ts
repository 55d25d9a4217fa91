// Whole-model pipeline blocks: a @huggingface/transformers pipeline (feature-extraction,
// text-classification) that one peer runs whole. The coordinator serves such a block as a model of
// one "layer" under a reserved id (`block/...`), so it is placed, replicated, routed and failed over
// like layer ranges; a client calls the peer its route names with a `call` frame and hears back an
// `answer` frame.
import { z } from 'zod';
import { PeerIdSchema } from './ids.ts';
import { RouteTicketSchema } from './tickets.ts';

/** Tasks a whole-model pipeline block runs. */
export const PipelineTaskSchema = z.enum(['feature-extraction', 'text-classification']);
export type PipelineTask = z.infer<typeof PipelineTaskSchema>;
export const PIPELINE_TASKS: readonly PipelineTask[] = PipelineTaskSchema.options;

/** Model ids under this prefix are pipeline blocks' own; a `serve` may not take them. */
export const PIPELINE_MODEL_PREFIX = 'block/';

/** The model id the coordinator serves a pipeline block under: `block/<type>.<name>/<version>`. */
export function pipelineModelId(uri: string): string {
  const colon = uri.lastIndexOf(':');
  return `${PIPELINE_MODEL_PREFIX}${uri.slice(0, colon)}/${uri.slice(colon + 1)}`;
}

/** Frame types of pipeline calls (after the serving frames of session.ts). */
export const PipelineFrame = {
  /** JSON PipelineCall, client -> the peer its route names. */
  call: 48,
  /** JSON PipelineAnswer, peer -> client. */
  answer: 49,
} as const;

/** Texts in one call, and their bounds (a peer runs them as one batch). */
export const MAX_PIPELINE_INPUTS = 64;
export const MAX_PIPELINE_INPUT_CHARS = 8192;
export const MAX_PIPELINE_CALL_BYTES = 128 * 1024;
/** An answer holds at most 64 embeddings of 4096 floats as JSON, with room. */
export const MAX_PIPELINE_ANSWER_BYTES = 16 * 1024 * 1024;

export const PipelineCallSchema = z.object({
  callId: z.number().int().nonnegative().max(0xffffffff),
  modelId: z.string().startsWith(PIPELINE_MODEL_PREFIX).max(192),
  client: PeerIdSchema,
  inputs: z.array(z.string().max(MAX_PIPELINE_INPUT_CHARS)).min(1).max(MAX_PIPELINE_INPUTS),
  /** The coordinator's ticket for the one-hop route to this peer, for this client. */
  ticket: RouteTicketSchema.optional(),
});

export const LabelScoreSchema = z.object({ label: z.string().max(256), score: z.number().finite() });

export const PipelineAnswerSchema = z.discriminatedUnion('ok', [
  z.object({
    callId: z.number().int().nonnegative(),
    ok: z.literal(true),
    /** feature-extraction: one mean-pooled, normalised embedding per input. */
    embeddings: z.array(z.array(z.number().finite()).max(65536)).max(MAX_PIPELINE_INPUTS).optional(),
    /** text-classification: every label with its score per input, best first. */
    labels: z.array(z.array(LabelScoreSchema).max(1024)).max(MAX_PIPELINE_INPUTS).optional(),
    /** Tokens the inputs took (padding not counted). */
    tokens: z.number().int().nonnegative(),
  }),
  z.object({ callId: z.number().int().nonnegative(), ok: z.literal(false), code: z.string().max(64), message: z.string().max(1024) }),
]);

export type PipelineCall = z.infer<typeof PipelineCallSchema>;
export type PipelineAnswer = z.infer<typeof PipelineAnswerSchema>;
export type LabelScore = z.infer<typeof LabelScoreSchema>;
