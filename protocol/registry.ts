// The request every per-network registry takes (blocks, vDAGs, policies): create and update carry
// the record (checked by the server, which names the bad field), delete and get its key, list
// nothing (or a query). Answered with the records concerned, or an error with the requestId.
import { z } from 'zod';
import { PeerIdSchema } from './ids.ts';

/** What the server adds to a kept record: who owns it, when it was made and last changed. */
export const OWNED_FIELDS = {
  owner: PeerIdSchema,
  createdAt: z.number().int().nonnegative(),
  updatedAt: z.number().int().nonnegative(),
};

export function registryRequestSchema<T extends string, R extends string, K extends string, Extra extends z.ZodRawShape = {}>(
  type: T,
  recordField: R,
  keyField: K,
  keySchema: z.ZodType<string>,
  extra: Extra = {} as Extra,
) {
  return z
    .object({
      type: z.literal(type),
      requestId: z.number().int().nonnegative(),
      op: z.enum(['create', 'update', 'delete', 'get', 'list']),
      ...({ [recordField]: z.unknown().optional(), [keyField]: keySchema.optional() } as { [P in R]: z.ZodOptional<z.ZodUnknown> } & { [P in K]: z.ZodOptional<z.ZodType<string>> }),
      ...extra,
    })
    .superRefine((m, ctx) => {
      const fields = m as unknown as Record<string, unknown> & { op: string };
      const needs = fields.op === 'create' || fields.op === 'update' ? recordField : fields.op === 'list' ? undefined : keyField;
      if (needs && fields[needs] === undefined) ctx.addIssue({ code: 'custom', path: [needs], message: `${type} ${fields.op} needs ${needs}` });
    });
}
