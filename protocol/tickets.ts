// Route tickets: the coordinator signs each route it hands out, so a hop serving a range the
// coordinator assigned accepts a session only on a route the coordinator chose, for the client it
// chose it for. The server's Ed25519 key (an Identity, identity.ts) signs; its public
// key reaches every peer in `welcome`. The stage roles (embed, head) are the client's to choose
// and are not signed; which peers, which layers, which client and until when are.
import { z } from 'zod';
import { PublicKeySchema, SignatureSchema, toBase64Url, verifySignature, type Identity } from './identity.ts';
import type { Hop } from './serving.ts';

export const RouteTicketSchema = z.object({
  /** ms since the epoch after which a hop no longer accepts a new session with it. */
  expires: z.number().int().positive(),
  signature: SignatureSchema,
});

export type RouteTicket = z.infer<typeof RouteTicketSchema>;

export const ServerKeySchema = PublicKeySchema;

/** How long a route's ticket lets hops accept a session on it. */
export const TICKET_LIFETIME_MS = 10 * 60_000;

export interface TicketFields {
  network: string;
  modelId: string;
  client: string;
  hops: readonly Hop[];
  expires: number;
}

function payload(f: TicketFields): Uint8Array {
  const hops = f.hops.map((h) => [h.peerId, h.start, h.end]);
  return new TextEncoder().encode(JSON.stringify(['aigrid-route-ticket-1', f.network, f.modelId, f.client, hops, f.expires]));
}

/** The server's signature of a route for a client, valid until `fields.expires`. */
export async function signTicket(serverKey: Identity, fields: TicketFields): Promise<RouteTicket> {
  return { expires: fields.expires, signature: toBase64Url(await serverKey.sign(payload(fields))) };
}

/**
 * Whether the ticket is the server's signature of these fields and has not expired. Pages without
 * WebCrypto check with @noble/curves (identity.ts).
 */
export async function ticketValid(serverKey: string, ticket: RouteTicket, fields: Omit<TicketFields, 'expires'>, now = Date.now()): Promise<boolean> {
  if (ticket.expires <= now) return false;
  return verifySignature(serverKey, payload({ ...fields, expires: ticket.expires }), ticket.signature);
}
