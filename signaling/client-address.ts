// The address a connection is counted under (connections per address). Behind a reverse proxy
// every socket comes from the proxy, so the proxies the operator trusts (--trusted-proxy) name the
// client in X-Forwarded-For: the right-most address there that is not itself a trusted proxy. A
// header from anyone else is ignored (a client could write any address into it).
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

export function clientAddress(req: IncomingMessage, trustedProxies: ReadonlySet<string>): string | undefined {
  const direct = normalize(req.socket.remoteAddress);
  if (!direct || !trustedProxies.has(direct)) return direct;
  const header = req.headers['x-forwarded-for'];
  const hops = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((h) => normalize(h.trim()));
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i];
    if (!hop || !isIP(hop)) return direct; // a malformed chain: count the proxy itself
    if (!trustedProxies.has(hop)) return hop;
  }
  return direct;
}

/** IPv4 clients count the same on an IPv4 or a dual-stack IPv6 socket. */
export function normalize(address: string | undefined): string | undefined {
  if (!address) return undefined;
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
