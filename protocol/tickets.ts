// Route tickets: the coordinator signs each route it hands out, so a hop serving a range the
// coordinator assigned accepts a session only on a route the coordinator chose, for the client it
// chose it for. The server's Ed25519 key (WebCrypto, in Node and browsers alike) signs; its public
// key reaches every peer in `welcome`. The stage roles (embed, head) are the client's to choose
// and are not signed; which peers, which layers, which client and until when are.
import { z } from 'zod';
import type { Hop } from './serving.ts';

export const RouteTicketSchema = z.object({
  /** ms since the epoch after which a hop no longer accepts a new session with it. */
  expires: z.number().int().positive(),
  /** base64url Ed25519 signature (64 bytes). */
  signature: z.string().regex(/^[A-Za-z0-9_-]{86}$/),
});

export type RouteTicket = z.infer<typeof RouteTicketSchema>;

/** base64url of a raw Ed25519 public key (32 bytes). */
export const ServerKeySchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/);

/** How long a route's ticket lets hops accept a session on it. */
export const TICKET_LIFETIME_MS = 10 * 60_000;

export interface TicketFields {
  network: string;
  modelId: string;
  client: string;
  hops: readonly Hop[];
  expires: number;
}

function payload(f: TicketFields): Uint8Array<ArrayBuffer> {
  const hops = f.hops.map((h) => [h.peerId, h.start, h.end]);
  return new TextEncoder().encode(JSON.stringify(['aigrid-route-ticket-1', f.network, f.modelId, f.client, hops, f.expires]));
}

export function toBase64Url(bytes: Uint8Array): string {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text: string): Uint8Array<ArrayBuffer> {
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** A new signing key for a server, and its public half as `welcome` carries it. */
export async function newServerKey(): Promise<{ privateKey: CryptoKey; publicKey: string }> {
  const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, publicKey: toBase64Url(raw) };
}

export async function signTicket(privateKey: CryptoKey, fields: TicketFields): Promise<RouteTicket> {
  const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, privateKey, payload(fields)));
  return { expires: fields.expires, signature: toBase64Url(signature) };
}

const imported = new Map<string, Promise<CryptoKey>>();

/** Whether the ticket is the server's signature of these fields and has not expired. */
/**
 * Whether the ticket is the server's signature of these fields and has not expired. False too
 * where WebCrypto is missing (a page that is not a secure context cannot check, so refuses).
 */
export async function ticketValid(serverKey: string, ticket: RouteTicket, fields: Omit<TicketFields, 'expires'>, now = Date.now()): Promise<boolean> {
  if (ticket.expires <= now) return false;
  try {
    let key = imported.get(serverKey);
    if (!key) {
      key = crypto.subtle.importKey('raw', fromBase64Url(serverKey), { name: 'Ed25519' }, false, ['verify']);
      imported.set(serverKey, key);
      if (imported.size > 16) imported.delete(imported.keys().next().value!); // a peer meets few servers
    }
    return await crypto.subtle.verify({ name: 'Ed25519' }, await key, fromBase64Url(ticket.signature), payload({ ...fields, expires: ticket.expires }));
  } catch {
    return false;
  }
}
