// The data plane's control frames and frame types: everything a client and the hops of a route say
// to each other about a session, besides the activations themselves (activation.ts). JSON control
// frames are checked against these schemas on arrival; the types come from the schemas.
//
// A session's route is a list of stages. Each stage is one peer running a range of layers; the
// first stage may also embed token ids (`embed`) and the last may also run the final norm and LM
// head (`head`). A route without either carries hidden states in and out (the client holds the
// head); a route with both takes token ids and returns logits (the client holds only the
// tokenizer and sampler). The frames into and out of a stage follow from its roles:
//   into stage 0: `tokens` when it embeds, else `forward`; between stages: `forward`;
//   out of the last stage, to the client: `logits` when it runs the head, else `result`.
import { z } from 'zod';
import { AigridError, codeOf, type ErrorCode } from './errors.ts';
import { PeerIdSchema } from './ids.ts';
import { HopSchema, ModelIdSchema } from './serving.ts';
import { RouteTicketSchema } from './tickets.ts';

/** Frame types of collective serving (frames.ts holds the base ones). */
export const ServingFrame = {
  /**
   * JSON SessionSetup, client -> each hop. A hop acknowledges by sending the same setup back once
   * it is linked to its next hop (the `ack`); only then does the client send activations.
   */
  session: 32,
  /** Activation header + hidden states entering a stage. */
  forward: 33,
  /** Activation header + hidden states after the last stage, back to the client. */
  result: 34,
  /** JSON SessionFailure: a hop refused or could not run a request. */
  fail: 35,
  /** JSON Release: the session ended; hops drop it (and its KV caches) and pass it on. */
  release: 36,
  /** Activation header + token ids entering stage 0 when it embeds. */
  tokens: 37,
  /** Activation header + f32 logits of a request's last token, from a last stage that runs the head. */
  logits: 38,
  /** A `forward`, `result` or `logits` frame with its sender's signed leaf (evidence.ts wrapSigned). */
  signed: 39,
  /** JSON FrameAsk: the session's client asks a hop for an input frame it kept (retention). */
  ask: 40,
  /** A kept `signed` frame, as it arrived; hop -> client. */
  kept: 41,
} as const;

export const SessionIdSchema = z.string().regex(/^[0-9a-f]{16}$/, 'sessionId: 16 hex digits');

/** One stage of a route: a peer, its layers, and whether it also embeds or runs the head. */
export const StageSchema = HopSchema.extend({
  embed: z.literal(true).optional(),
  head: z.literal(true).optional(),
});

export const SessionSetupSchema = z.object({
  sessionId: SessionIdSchema,
  modelId: ModelIdSchema,
  // The hop index travels in a u8 of the activation header.
  hops: z.array(StageSchema).min(1).max(255),
  client: PeerIdSchema,
  /** The coordinator's ticket for this route and client, when it chose the route. */
  ticket: RouteTicketSchema.optional(),
});

/** An ERR_* code as it crosses the wire: a code this version does not know becomes ERR_UNKNOWN_CODE. */
const WireCodeSchema = z
  .string()
  .max(64)
  .transform((code): ErrorCode => codeOf(code));

/** A failure report; `blame` names the peer the reporting hop holds at fault when that is not itself. */
export const SessionFailureSchema = z.object({
  sessionId: SessionIdSchema,
  requestId: z.number().int().nonnegative(),
  /** The hop that failed or refused. */
  peerId: PeerIdSchema,
  code: WireCodeSchema,
  message: z.string().max(1024),
  blame: PeerIdSchema.optional(),
});

export const ReleaseSchema = z.object({ sessionId: SessionIdSchema });

/** Which kept frame a client asks for: the input of request `requestId` of its session. */
export const FrameAskSchema = z.object({ sessionId: SessionIdSchema, requestId: z.number().int().min(0).max(0xffffffff) });

export type Stage = z.infer<typeof StageSchema>;
export type SessionSetup = z.infer<typeof SessionSetupSchema>;
export type SessionFailure = z.infer<typeof SessionFailureSchema>;
export type Release = z.infer<typeof ReleaseSchema>;
export type FrameAsk = z.infer<typeof FrameAskSchema>;

const MAX_CONTROL_BYTES = 64 * 1024;

export function randomSessionId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('');
}

export function encodeControl(value: object): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/** A control frame's JSON checked against its schema; ERR_FRAME_MALFORMED otherwise. */
export function decodeControl<S extends z.ZodType>(schema: S, payload: Uint8Array, what: string, maxBytes = MAX_CONTROL_BYTES): z.output<S> {
  if (payload.byteLength > maxBytes) throw new AigridError('ERR_FRAME_MALFORMED', `${what} frame of ${payload.byteLength} bytes is too large`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    throw new AigridError('ERR_FRAME_MALFORMED', `${what} frame is not UTF-8 JSON`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AigridError('ERR_FRAME_MALFORMED', `${what} frame: ${issue?.path.join('.') || 'value'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/**
 * ERR_INVALID_ARGUMENT unless the stages are contiguous, non-empty layer ranges (from `start` to
 * `end` when given), with `embed` only on the first stage and `head` only on the last.
 */
export function checkRoute(hops: readonly Stage[], start?: number, end?: number): void {
  const fail = (why: string) => new AigridError('ERR_INVALID_ARGUMENT', `route ${describeRoute(hops)}: ${why}`);
  if (hops.length === 0) throw fail('no hops');
  for (const [i, hop] of hops.entries()) {
    if (hop.end <= hop.start) throw fail(`hop ${i} has an empty range`);
    if (i > 0 && hop.start !== hops[i - 1]!.end) throw fail(`hop ${i} starts at ${hop.start}, not where hop ${i - 1} ends`);
    if (hop.embed && i > 0) throw fail(`hop ${i} embeds, but only the first hop may`);
    if (hop.head && i < hops.length - 1) throw fail(`hop ${i} runs the head, but only the last hop may`);
  }
  if (hops[0]!.embed && hops[0]!.start !== 0) throw fail(`the first hop embeds but starts at layer ${hops[0]!.start}, not 0`);
  if (start !== undefined && hops[0]!.start !== start) throw fail(`starts at layer ${hops[0]!.start}, not ${start}`);
  if (end !== undefined && hops.at(-1)!.end !== end) throw fail(`ends at layer ${hops.at(-1)!.end}, not ${end}`);
}

/** Two setups name the same session on the same route (roles included) for the same client. */
export function sameSetup(a: SessionSetup, b: SessionSetup): boolean {
  return (
    a.sessionId === b.sessionId &&
    a.modelId === b.modelId &&
    a.client === b.client &&
    a.hops.length === b.hops.length &&
    a.hops.every((h, i) => {
      const o = b.hops[i]!;
      return h.peerId === o.peerId && h.start === o.start && h.end === o.end && !h.embed === !o.embed && !h.head === !o.head;
    })
  );
}

export function describeRoute(hops: readonly Stage[]): string {
  const roles = (h: Stage) => `${h.embed ? 'embed+' : ''}[${h.start},${h.end})${h.head ? '+head' : ''}`;
  return hops.map((h) => `${h.peerId}${roles(h)}`).join(' -> ');
}
