// Blocks: the units a network serves, each named by a URI `<type>.<name>:<version>` (for
// example `llm.smollm2:1.0` or `embedding.minilm:2`), owned by the key that created it. A block
// says what it runs (a layer-split LLM the grid serves, or a whole-model pipeline one peer runs at
// a time), how many replicas it wants, tags that vDAG nodes select it by, and the JSON Schemas of
// its input and output. The signaling server keeps them per network (signaling/blocks.ts).
import { z } from 'zod';
import { ModelIdSchema } from './serving.ts';
import { PipelineTaskSchema } from './pipelines.ts';
import { OWNED_FIELDS, registryRequestSchema } from './registry.ts';

/** `<type>.<name>:<version>`: lower-case type, a name and a version of [A-Za-z0-9._-]. */
export const BlockUriSchema = z
  .string()
  .max(160)
  .regex(/^[a-z][a-z0-9-]{0,31}\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}:[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/, 'a block URI is <type>.<name>:<version>, e.g. llm.smollm2:1.0');

/** A tag is `word` or `key=value` (lower-case letters, digits and ._-), e.g. `task=embedding`. */
export const BlockTagSchema = z.string().regex(/^[a-z0-9._-]{1,32}(=[a-z0-9._-]{1,64})?$/, 'a tag is word or key=value of [a-z0-9._-]');


/** A JSON Schema document (checked for real by the server: signaling/blocks.ts). */
export const JsonSchemaSchema = z.record(z.string(), z.unknown());

export const MAX_BLOCKS_PER_NETWORK = 256;
/** The largest block spec, as JSON. */
export const MAX_BLOCK_SPEC_BYTES = 32 * 1024;
export const MAX_BLOCK_TAGS = 32;
/** Replicas a block may ask for at most. */
export const MAX_BLOCK_REPLICAS = 64;

export const BlockModelSchema = z.discriminatedUnion('kind', [
  /** Layer-split across peers: the grid's served model of this id (grid.serve / aigrid serve). */
  z.object({ kind: z.literal('llm'), modelId: ModelIdSchema }),
  /** Run whole by one peer at a time: a transformers.js pipeline of a hub id or a folder URL. */
  z.object({
    kind: z.literal('pipeline'),
    task: PipelineTaskSchema,
    model: z.string().min(1).max(2048),
    revision: z.string().max(128).optional(),
    /** Memory a peer sets aside for it, in MB (placement counts it against the peer's budget). */
    memoryMB: z.number().int().min(1).max(65536).default(256),
  }),
]);

/** What a client sends to create or update a block. */
export const BlockSpecSchema = z.strictObject({
  uri: BlockUriSchema,
  model: BlockModelSchema,
  description: z.string().max(1024).optional(),
  tags: z.array(BlockTagSchema).max(MAX_BLOCK_TAGS).default([]),
  minReplicas: z.number().int().min(1).max(MAX_BLOCK_REPLICAS).default(1),
  maxReplicas: z.number().int().min(1).max(MAX_BLOCK_REPLICAS).default(4),
  /** Policies of this block by hook, each the id of a policy of the network. */
  policies: z.record(z.string().regex(/^[a-z][a-z-]{0,31}$/), z.string().min(1).max(128)).optional(),
  inputSchema: JsonSchemaSchema,
  outputSchema: JsonSchemaSchema,
});

/** A block as the server keeps it: the spec, who owns it, when it was made and last changed. */
export const BlockSchema = BlockSpecSchema.extend(OWNED_FIELDS);

/** Selects blocks: every tag listed must be on the block; `type` is the URI's first part. */
export const BlockQuerySchema = z.strictObject({
  type: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/).optional(),
  tags: z.array(BlockTagSchema).max(MAX_BLOCK_TAGS).optional(),
});

/**
 * Client -> server: the block registry of the network joined: create and update carry `block`
 * (checked by the server, which names the bad field), delete and get a `uri`, list an optional
 * `query`. Answered `blocks` (or `error` with the requestId).
 */
export const BlocksRequestSchema = registryRequestSchema('blocks', 'block', 'uri', BlockUriSchema, { query: BlockQuerySchema.optional() });

/** Server -> client: the blocks a request asked for (the one created, updated, deleted or got; the list). */
export const BlocksReplySchema = z.object({
  type: z.literal('blocks'),
  requestId: z.number().int().nonnegative(),
  blocks: z.array(BlockSchema).max(MAX_BLOCKS_PER_NETWORK),
});

export type BlockSpecInput = z.input<typeof BlockSpecSchema>;
export type BlockSpec = z.infer<typeof BlockSpecSchema>;
export type Block = z.infer<typeof BlockSchema>;
export type BlockQuery = z.infer<typeof BlockQuerySchema>;
export type BlockModel = z.infer<typeof BlockModelSchema>;

/** The URI's parts. */
export function parseBlockUri(uri: string): { type: string; name: string; version: string } {
  const dot = uri.indexOf('.');
  const colon = uri.lastIndexOf(':');
  return { type: uri.slice(0, dot), name: uri.slice(dot + 1, colon), version: uri.slice(colon + 1) };
}

/** Whether a block answers a query: its type, and every tag asked. */
export function blockMatches(block: Pick<Block, 'uri' | 'tags'>, query: BlockQuery = {}): boolean {
  if (query.type !== undefined && parseBlockUri(block.uri).type !== query.type) return false;
  return (query.tags ?? []).every((tag) => block.tags.includes(tag));
}
