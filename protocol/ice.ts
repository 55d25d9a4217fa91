// ICE servers a signaling server hands its peers in `welcome`: STUN and TURN URLs (RFC 7064,
// RFC 7065), TURN ones with time-limited credentials, and whether peers must relay everything.
import { z } from 'zod';
import { AigridError } from './errors.ts';

export const ICE_SCHEMES = ['stun', 'stuns', 'turn', 'turns'] as const;
export type IceScheme = (typeof ICE_SCHEMES)[number];

/** Most ICE server entries a welcome carries, and URLs per entry. */
export const MAX_ICE_SERVERS = 16;
export const MAX_ICE_URL_CHARS = 512;

export interface IceUrl {
  scheme: IceScheme;
  host: string;
  port?: number;
  transport?: 'udp' | 'tcp';
}

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const IPV6 = /^\[[0-9A-Fa-f:.]{2,45}\]$/;

/**
 * Parses `stun:host[:port]`, `stuns:host[:port]`, `turn:host[:port][?transport=udp|tcp]` or
 * `turns:...`; the host is a name, an IPv4 address or a bracketed IPv6 one. Anything else (a path,
 * user info, another query, a port out of range) is ERR_INVALID_ARGUMENT naming the URL.
 */
export function parseIceUrl(url: string): IceUrl {
  const bad = (why: string) => new AigridError('ERR_INVALID_ARGUMENT', `ICE server ${JSON.stringify(String(url).slice(0, 120))}: ${why}`);
  if (typeof url !== 'string' || url.length > MAX_ICE_URL_CHARS) throw bad(`must be a string of at most ${MAX_ICE_URL_CHARS} characters`);
  const m = /^([a-z]+):([^?]*)(?:\?(.*))?$/.exec(url);
  if (!m) throw bad('expected stun:host[:port], turn:host[:port][?transport=udp|tcp], stuns: or turns:');
  const scheme = m[1] as IceScheme;
  if (!ICE_SCHEMES.includes(scheme)) throw bad(`scheme must be one of ${ICE_SCHEMES.join(', ')}`);
  const hostPort = m[2]!;
  const query = m[3];
  const hp = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(hostPort);
  if (!hp) throw bad('expected host[:port] after the scheme (no path or user info)');
  const host = hp[1]!;
  if (!(HOST_NAME.test(host) || IPV6.test(host))) throw bad(`${JSON.stringify(host.slice(0, 80))} is not a host name or address`);
  const result: IceUrl = { scheme, host };
  if (hp[2] !== undefined) {
    const port = Number(hp[2]);
    if (port < 1 || port > 65535) throw bad(`port ${port} is not in 1..65535`);
    result.port = port;
  }
  if (query !== undefined) {
    if (scheme === 'stun' || scheme === 'stuns') throw bad('a STUN URL takes no query');
    const t = /^transport=(udp|tcp)$/.exec(query);
    if (!t) throw bad('the only query a TURN URL takes is transport=udp or transport=tcp');
    result.transport = t[1] as 'udp' | 'tcp';
  }
  return result;
}

export const isTurnUrl = (url: IceUrl): boolean => url.scheme === 'turn' || url.scheme === 'turns';

/** One RTCIceServer as a welcome carries it. */
export const IceServerSchema = z.object({
  urls: z.array(z.string().max(MAX_ICE_URL_CHARS).regex(/^(stuns?|turns?):/)).min(1).max(MAX_ICE_SERVERS),
  username: z.string().max(512).optional(),
  credential: z.string().max(512).optional(),
});

export const IceTransportPolicySchema = z.enum(['all', 'relay']);

export type IceServer = z.infer<typeof IceServerSchema>;
export type IceTransportPolicy = z.infer<typeof IceTransportPolicySchema>;
