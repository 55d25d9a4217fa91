// A network's policies: JavaScript its owner writes for a hook (policy/ runs it in a sandbox),
// kept by the signaling server per network like blocks and vDAGs. Only the network's owner
// creates, changes or deletes them; members read them (a vDAG's pre- and post-processing
// policies run in the client that runs the vDAG).
import { z } from 'zod';
import { OWNED_FIELDS, registryRequestSchema } from './registry.ts';

export const PolicyIdSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'a policy id is 1-64 of [a-z0-9._-], starting with a letter or digit');
/** Where a policy is used: route selection, placement, admission of a joining peer, quota per client, vDAG pre/post-processing. */
export const PolicyHookSchema = z.enum(['route', 'placement', 'admission', 'quota', 'vdag']);

export const MAX_POLICIES_PER_NETWORK = 64;
export const MAX_POLICY_CODE_BYTES = 64 * 1024;
/** The largest `parameters`, as JSON. */
export const MAX_POLICY_PARAMETERS_BYTES = 8 * 1024;

export const PolicySpecSchema = z.strictObject({
  id: PolicyIdSchema,
  hook: PolicyHookSchema,
  /** A script defining function eval(parameters, input, context) (see policy/sandbox.ts). */
  code: z.string().min(1).max(MAX_POLICY_CODE_BYTES),
  /** Passed to eval as its first argument. */
  parameters: z
    .unknown()
    .refine((p) => p === undefined || (JSON.stringify(p) ?? '').length <= MAX_POLICY_PARAMETERS_BYTES, `parameters: at most ${MAX_POLICY_PARAMETERS_BYTES} bytes of JSON`)
    .optional(),
  description: z.string().max(1024).optional(),
});

export const PolicyRecordSchema = PolicySpecSchema.extend(OWNED_FIELDS);

/** Client -> server: the policy registry of the network joined, as `blocks`. Answered `policies`. */
export const PoliciesRequestSchema = registryRequestSchema('policies', 'policy', 'id', PolicyIdSchema);

export const PoliciesReplySchema = z.object({
  type: z.literal('policies'),
  requestId: z.number().int().nonnegative(),
  policies: z.array(PolicyRecordSchema).max(MAX_POLICIES_PER_NETWORK),
});

export type PolicyHook = z.infer<typeof PolicyHookSchema>;
export type PolicySpec = z.infer<typeof PolicySpecSchema>;
export type PolicySpecInput = z.input<typeof PolicySpecSchema>;
export type PolicyRecord = z.infer<typeof PolicyRecordSchema>;
