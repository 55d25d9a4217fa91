// Credits: per key and network, contributors earn for the work clients confirm, clients spend per
// token. Work counts only when both sides agree on it: serving peers report with their status the
// tokens they ran per client and layer range, clients report (`usage`) the tokens they received
// per peer and range, and the server settles the smaller of the two (signaling/credits.ts). A
// network's owner chooses the mode and prices (the `policy` message). Every amount is an integer.
import { z } from 'zod';
import { NetworkSchema, PeerIdSchema } from './ids.ts';

/**
 * free: nothing is charged, settled work is credited to its contributor as minted credits (a
 * record of contributions); metered: clients are charged and may go below zero;
 * credits-required: a client whose balance is below the cost of one token is refused routes.
 */
export const CreditModeSchema = z.enum(['free', 'metered', 'credits-required']);

export const MAX_CREDIT_PRICE = 1_000_000;
/** The most one grant mints (and the most a new key is granted). */
export const MAX_CREDIT_GRANT = 1_000_000_000_000;

export const CreditRulesSchema = z.object({
  mode: CreditModeSchema,
  /** Credits per token per layer a peer runs for a client. */
  pricePerToken: z.number().int().min(0).max(MAX_CREDIT_PRICE),
  /** Credits per whole-model (pipeline block) call. */
  pricePerCall: z.number().int().min(0).max(MAX_CREDIT_PRICE),
  /** Minted once per key and network, at the key's first route outside free mode. */
  grant: z.number().int().min(0).max(MAX_CREDIT_GRANT),
});

export const DEFAULT_CREDIT_RULES: CreditRules = { mode: 'free', pricePerToken: 1, pricePerCall: 1, grant: 0 };

/** Entries in one usage report (a status's or a client's); more wait for the next report. */
export const MAX_USAGE_ENTRIES = 64;
/** Tokens one entry may count (far above a report interval's work; only lies reach it). */
export const MAX_USAGE_TOKENS = 1_000_000_000;
export const MAX_USAGE_CALLS = 1_000_000;

const amounts = {
  /** The layers [start, end) of the hop the tokens ran through. */
  start: z.number().int().nonnegative().max(4095),
  end: z.number().int().positive().max(4096),
  tokens: z.number().int().min(0).max(MAX_USAGE_TOKENS),
  calls: z.number().int().min(0).max(MAX_USAGE_CALLS).optional(),
};
const rangeHolds = (u: { start: number; end: number }) => u.end > u.start;

/** A serving peer's count for one client since its last status (the status's `usage`). */
export const ServedUsageSchema = z.object({ client: PeerIdSchema, ...amounts }).refine(rangeHolds, 'usage: end must follow start');
/** A client's count for one peer since its last `usage` message. */
export const ReceivedUsageSchema = z.object({ peerId: PeerIdSchema, ...amounts }).refine(rangeHolds, 'usage: end must follow start');

/** Balances one `credits` answer lists at most. */
export const MAX_CREDITS_TOP = 100;

/**
 * Client -> server: balances. Without fields, the asker's own; `key`, another key's (the network's
 * owner only); `top`, the largest balances (owner only). Answered `credits`.
 */
export const CreditsRequestSchema = z
  .object({
    type: z.literal('credits'),
    requestId: z.number().int().nonnegative(),
    key: PeerIdSchema.optional(),
    top: z.number().int().min(1).max(MAX_CREDITS_TOP).optional(),
  })
  .refine((m) => m.key === undefined || m.top === undefined, 'credits: ask for a key or the top, not both');

/** Client -> server: the network's owner mints credits to a key. Answered `credits` with its balance. */
export const GrantMessageSchema = z.object({
  type: z.literal('grant'),
  requestId: z.number().int().nonnegative(),
  key: PeerIdSchema,
  amount: z.number().int().min(1).max(MAX_CREDIT_GRANT),
});

export const CreditBalanceSchema = z.object({
  key: PeerIdSchema,
  balance: z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
});

/** Server -> client: balances asked for, with the network's mode and prices. */
export const CreditsReplySchema = z.object({
  type: z.literal('credits'),
  requestId: z.number().int().nonnegative(),
  network: NetworkSchema,
  rules: CreditRulesSchema,
  balances: z.array(CreditBalanceSchema).max(MAX_CREDITS_TOP),
});

export type CreditMode = z.infer<typeof CreditModeSchema>;
export type CreditRules = z.infer<typeof CreditRulesSchema>;
export type ServedUsage = z.infer<typeof ServedUsageSchema>;
export type ReceivedUsage = z.infer<typeof ReceivedUsageSchema>;
export type CreditBalance = z.infer<typeof CreditBalanceSchema>;
export type CreditsReply = z.infer<typeof CreditsReplySchema>;
