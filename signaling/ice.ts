// The ICE servers a signaling server hands its peers in each welcome. TURN credentials are minted
// per peer from a secret shared with the TURN server, in the scheme coturn checks with
// `use-auth-secret` / `static-auth-secret` (the TURN REST API): username `<expiry unix seconds>:<peerId>`,
// credential base64(HMAC-SHA1(secret, username)). Each welcome mints fresh ones, and a connected
// peer is sent fresh ones (an `ice` message) at half their lifetime.
import { createHmac } from 'node:crypto';
import {
  AigridError,
  isTurnUrl,
  MAX_ICE_SERVERS,
  parseIceUrl,
  type IceServer,
  type IceTransportPolicy,
} from '../protocol/index.ts';

/** How long minted TURN credentials stay valid by default (12 h). */
export const DEFAULT_TURN_LIFETIME_S = 12 * 60 * 60;
const MAX_TURN_LIFETIME_S = 30 * 24 * 60 * 60;

export interface IceOptions {
  /** STUN and TURN URLs (stun:, stuns:, turn:, turns:). */
  servers?: readonly string[];
  /** The secret the TURN server checks credentials with (coturn's static-auth-secret). */
  turnSecret?: string;
  /** Seconds minted credentials are valid (default 12 h). */
  turnLifetimeS?: number;
  /** Every peer relays everything through TURN (iceTransportPolicy 'relay'). */
  relayOnly?: boolean;
  /** How often a connected peer is sent fresh credentials, in ms (default half the lifetime; less than it). */
  turnRenewMs?: number;
}

/** What a welcome carries about ICE: absent fields when the operator configured none. */
export interface WelcomeIce {
  iceServers?: IceServer[];
  iceTransportPolicy?: IceTransportPolicy;
}

/** coturn's REST API credential for `peerId`, valid until `expiresAt` (unix seconds). */
export function turnCredential(secret: string, peerId: string, expiresAt: number): { username: string; credential: string } {
  const username = `${Math.floor(expiresAt)}:${peerId}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

/** What a peer is handed, with fresh credentials; `renewMs`: how often a connected peer needs them again (TURN only). */
export type IceForPeer = ((peerId: string, nowMs?: number) => WelcomeIce) & { renewMs?: number };

/**
 * Checks the operator's ICE options (ERR_INVALID_ARGUMENT naming the problem) and returns what
 * each welcome carries for a peer, with fresh credentials; undefined when nothing is configured.
 */
export function iceForPeers(options: IceOptions = {}): IceForPeer | undefined {
  const urls = [...new Set(options.servers ?? [])];
  const parsed = urls.map((url) => ({ url, parts: parseIceUrl(url) }));
  const stun = parsed.filter((u) => !isTurnUrl(u.parts)).map((u) => u.url);
  const turn = parsed.filter((u) => isTurnUrl(u.parts)).map((u) => u.url);
  if (stun.length > MAX_ICE_SERVERS || turn.length > MAX_ICE_SERVERS) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `at most ${MAX_ICE_SERVERS} STUN and ${MAX_ICE_SERVERS} TURN URLs, got ${stun.length} and ${turn.length}`);
  }
  const secret = options.turnSecret;
  if (turn.length > 0 && !secret) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `TURN URLs (${turn[0]}) need the secret the TURN server shares (--turn-secret or AIGRID_TURN_SECRET)`);
  }
  if (secret !== undefined && turn.length === 0) {
    throw new AigridError('ERR_INVALID_ARGUMENT', 'a TURN secret was given without a turn: or turns: URL (--ice-server) to use it with');
  }
  if (options.relayOnly && turn.length === 0) {
    throw new AigridError('ERR_INVALID_ARGUMENT', 'relay-only ICE needs a TURN server: add --ice-server turn:HOST:PORT and --turn-secret');
  }
  const lifetimeS = options.turnLifetimeS ?? DEFAULT_TURN_LIFETIME_S;
  if (!Number.isInteger(lifetimeS) || lifetimeS < 60 || lifetimeS > MAX_TURN_LIFETIME_S) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `the TURN credential lifetime must be whole seconds in 60..${MAX_TURN_LIFETIME_S}, got ${lifetimeS}`);
  }
  const renewMs = options.turnRenewMs ?? (lifetimeS * 1000) / 2;
  if (!(Number.isFinite(renewMs) && renewMs >= 100 && renewMs < lifetimeS * 1000)) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `TURN credentials must be renewed every 100 ms or more and within their lifetime (${lifetimeS} s), got ${renewMs} ms`);
  }
  if (urls.length === 0 && !options.relayOnly) return undefined;
  const policy: IceTransportPolicy | undefined = options.relayOnly ? 'relay' : undefined;
  const forPeer: IceForPeer = (peerId, nowMs = Date.now()) => {
    const iceServers: IceServer[] = [];
    if (stun.length > 0) iceServers.push({ urls: stun });
    if (turn.length > 0) iceServers.push({ urls: turn, ...turnCredential(secret!, peerId, Math.floor(nowMs / 1000) + lifetimeS) });
    return { iceServers, ...(policy ? { iceTransportPolicy: policy } : {}) };
  };
  // Renewed at half their lifetime by default: a link opened just before the renewal still has hours.
  if (turn.length > 0) forPeer.renewMs = renewMs;
  return forPeer;
}

/** The command-line flags of the ICE options, shared by `aigrid signal` and `aigrid start`. */
export const ICE_FLAGS = {
  'ice-server': { type: 'string', multiple: true },
  'turn-secret': { type: 'string' },
  'turn-lifetime': { type: 'string' },
  'ice-relay-only': { type: 'boolean' },
} as const;

export const ICE_USAGE = `  --ice-server <url>    a STUN or TURN server for the peers' links, handed to each in its welcome
                        (repeatable): stun:HOST:PORT, turn:HOST:PORT?transport=udp|tcp, turns:...
                        (env AIGRID_ICE_SERVERS, comma-separated; default none: LAN links only)
  --turn-secret <s>     the TURN server's shared secret (coturn: use-auth-secret,
                        static-auth-secret=<s>); each welcome carries credentials minted from it
                        (env AIGRID_TURN_SECRET, better than the command line others can read)
  --turn-lifetime <s>   seconds a minted credential stays valid (default ${DEFAULT_TURN_LIFETIME_S}); a peer gets
                        fresh ones each time it connects
  --ice-relay-only      every link goes through the TURN server (iceTransportPolicy relay): peers
                        see relay addresses only, never each other's
`;

/** The ICE options from those flags and the environment (checked when the server starts). */
export function iceOptionsOf(
  values: { 'ice-server'?: string[]; 'turn-secret'?: string; 'turn-lifetime'?: string; 'ice-relay-only'?: boolean },
  env: NodeJS.ProcessEnv = process.env,
): IceOptions {
  const fromEnv = env.AIGRID_ICE_SERVERS?.split(',').map((s) => s.trim()).filter(Boolean) ?? [];
  const lifetime = values['turn-lifetime'];
  if (lifetime !== undefined && !/^\d+$/.test(lifetime.trim())) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `--turn-lifetime must be whole seconds, got ${JSON.stringify(lifetime.slice(0, 40))}`);
  }
  return {
    servers: values['ice-server']?.length ? values['ice-server'] : fromEnv,
    turnSecret: values['turn-secret'] ?? (env.AIGRID_TURN_SECRET || undefined),
    turnLifetimeS: lifetime === undefined ? undefined : Number(lifetime),
    relayOnly: values['ice-relay-only'] ?? false,
  };
}
