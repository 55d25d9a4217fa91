// vDAGs: blocks wired into a directed acyclic graph. Each node runs one block, named by URI or
// selected by a query over the network's blocks; connections carry a node's output to the next.
// One node takes the vDAG's input and one gives its output; a node fed by several others declares
// `join: 'all'` and receives an object of their outputs keyed by node id. Pre- and
// post-processing policies of a node rewrite its input and output. plan/vdag.ts compiles a spec.
import { z } from 'zod';
import { BlockQuerySchema, BlockUriSchema } from './blocks.ts';
import { OWNED_FIELDS, registryRequestSchema } from './registry.ts';

export const VdagIdSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'a vDAG id is 1-64 of [a-z0-9._-], starting with a letter or digit');
export const NodeIdSchema = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,31}$/, 'a node id is 1-32 of [A-Za-z0-9_-], starting with a letter');

export const MAX_VDAG_NODES = 64;
export const MAX_VDAG_CONNECTIONS = 256;

export const VdagNodeSchema = z
  .strictObject({
    id: NodeIdSchema,
    /** The block this node runs, by URI... */
    block: BlockUriSchema.optional(),
    /** ...or the first (by URI) of the blocks answering this query when the vDAG is compiled. */
    select: BlockQuerySchema.optional(),
    /** Several inputs: wait for all, and take them as one object keyed by node id. */
    join: z.literal('all').optional(),
    /** Ids of the network's policies run on the node's input before it, and on its output after it. */
    preprocess: z.string().min(1).max(128).optional(),
    postprocess: z.string().min(1).max(128).optional(),
  })
  .refine((n) => (n.block === undefined) !== (n.select === undefined), { message: 'a node names a block or a select query, one of them' });

export const VdagSpecSchema = z.strictObject({
  id: VdagIdSchema,
  description: z.string().max(1024).optional(),
  nodes: z.array(VdagNodeSchema).min(1).max(MAX_VDAG_NODES),
  connections: z.array(z.strictObject({ from: NodeIdSchema, to: NodeIdSchema })).max(MAX_VDAG_CONNECTIONS).default([]),
  /** The node that takes the vDAG's input, and the one whose output is the vDAG's. */
  input: NodeIdSchema,
  output: NodeIdSchema,
});

export type VdagNode = z.infer<typeof VdagNodeSchema>;
export type VdagSpecInput = z.input<typeof VdagSpecSchema>;
export type VdagSpec = z.infer<typeof VdagSpecSchema>;

export const MAX_VDAGS_PER_NETWORK = 128;
/** The largest vDAG spec, as JSON. */
export const MAX_VDAG_SPEC_BYTES = 32 * 1024;

/** A vDAG as the server keeps it: the spec, who owns it, when it was made and last changed. */
export const VdagSchema = VdagSpecSchema.extend(OWNED_FIELDS);
export type Vdag = z.infer<typeof VdagSchema>;

/**
 * Client -> server: the vDAG registry of the network joined (as `blocks`): create and update carry
 * `vdag` (compiled against the network's blocks, ERR_INVALID_VDAG naming the node), delete and get
 * an `id`. Answered `vdags` (or `error` with the requestId).
 */
export const VdagsRequestSchema = registryRequestSchema('vdags', 'vdag', 'id', VdagIdSchema);

export const VdagsReplySchema = z.object({
  type: z.literal('vdags'),
  requestId: z.number().int().nonnegative(),
  vdags: z.array(VdagSchema).max(MAX_VDAGS_PER_NETWORK),
});
