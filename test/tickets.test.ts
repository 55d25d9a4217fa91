// Route tickets: the server's signature over (network, model, client, hops, expiry) verifies only
// for exactly those fields, under that server's key, before it expires.
import { describe, expect, it } from 'vitest';
import { ephemeralIdentity, signTicket, ticketValid, type TicketFields } from '../protocol/index.ts';

describe('route tickets', () => {
  it('verify for exactly the signed route, client, network and key, until they expire', async () => {
    const server = ephemeralIdentity();
    const other = ephemeralIdentity();
    const fields: TicketFields = {
      network: 'net', modelId: 'm', client: 'client-a',
      hops: [{ peerId: 'p1', start: 0, end: 2 }, { peerId: 'p2', start: 2, end: 4 }],
      expires: Date.now() + 60_000,
    };
    const ticket = await signTicket(server, fields);
    const { expires: _e, ...route } = fields;
    expect(await ticketValid(server.publicKey, ticket, route)).toBe(true);
    const changed: Omit<TicketFields, 'expires'>[] = [
      { ...route, network: 'other' },
      { ...route, modelId: 'm2' },
      { ...route, client: 'client-b' },
      { ...route, hops: [{ peerId: 'p1', start: 0, end: 2 }, { peerId: 'evil', start: 2, end: 4 }] },
      { ...route, hops: [{ peerId: 'p1', start: 0, end: 3 }, { peerId: 'p2', start: 3, end: 4 }] },
      { ...route, hops: [...route.hops, { peerId: 'p3', start: 4, end: 5 }] },
    ];
    for (const c of changed) expect(await ticketValid(server.publicKey, ticket, c)).toBe(false);
    expect(await ticketValid(other.publicKey, ticket, route)).toBe(false);
    expect(await ticketValid(server.publicKey, { ...ticket, expires: ticket.expires + 1 }, route)).toBe(false);
    expect(await ticketValid(server.publicKey, ticket, route, fields.expires + 1)).toBe(false);
    const flipped = ticket.signature.startsWith('A') ? `B${ticket.signature.slice(1)}` : `A${ticket.signature.slice(1)}`;
    expect(await ticketValid(server.publicKey, { ...ticket, signature: flipped }, route)).toBe(false);
  });
});
