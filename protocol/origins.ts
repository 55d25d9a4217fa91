// Which web origins may drive a server from a page: its signaling endpoint (/signal) and its
// OpenAI gateway. Without this, any site a person visits could open ws://127.0.0.1:8787/signal and
// use the `aigrid start` running on their machine. One rule for both, shared by the signaling
// server and the gateway.
//
// Allowed: requests with no Origin (Node programs, curl: browsers always send one), pages from a
// loopback host (the web app served on 127.0.0.1 or localhost, local tools), extension pages, and
// the origins a deployment names (`*` for any). A server bound to a public address also accepts its
// own host (a page it served itself). DNS rebinding cannot pass the loopback rule: the Origin
// carries the attacker's host name, not the address it resolved to.
import { AigridError } from './errors.ts';

/** `*`, or the exact origins (scheme://host[:port]) allowed besides the defaults. */
export type AllowedOrigins = '*' | readonly string[];

export interface OriginCheck {
  /** The request's Origin header, if any. */
  origin: string | undefined;
  /** The request's Host header (only used by a server bound to a public address). */
  host: string | undefined;
  allowed: AllowedOrigins | undefined;
  /** Whether the server listens on a loopback address only. */
  loopbackBound: boolean;
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname) || hostname.endsWith('.localhost');
}

export function originAllowed({ origin, host, allowed, loopbackBound }: OriginCheck): boolean {
  if (origin === undefined) return true;
  if (allowed === '*') return true;
  if (allowed?.includes(origin)) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // includes the literal "null" of sandboxed frames and file: pages
  }
  if (url.protocol === 'chrome-extension:') return true;
  if ((url.protocol === 'http:' || url.protocol === 'https:') && isLoopbackHost(url.hostname)) return true;
  return !loopbackBound && host !== undefined && (url.protocol === 'http:' || url.protocol === 'https:') && url.host === host.toLowerCase();
}

/** Whether a listen address (127.0.0.1, ::1, localhost, 0.0.0.0, ...) is loopback only. */
export function isLoopbackAddress(address: string): boolean {
  return address === '::1' || isLoopbackHost(address);
}

/** Parses an --allowed-origins value: `*` or a comma-separated list of origins; ERR_INVALID_ARGUMENT otherwise. */
export function parseAllowedOrigins(value: string): AllowedOrigins {
  if (value.trim() === '*') return '*';
  return value
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean)
    .map((o) => {
      const bad = new AigridError('ERR_INVALID_ARGUMENT', `allowed origin ${JSON.stringify(o.slice(0, 100))} is not an origin (scheme://host[:port]) or *`);
      let url: URL;
      try {
        url = new URL(o);
      } catch {
        throw bad;
      }
      if (url.origin === 'null' || url.origin !== o.replace(/\/$/, '')) throw bad;
      return url.origin;
    });
}
