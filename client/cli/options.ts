// Option values the commands share, each checked with an error that names the option.
import type { BackendChoice } from '../model/backend/select.ts';
import { defaultIdentityFile, loadIdentityFile } from '../mesh/identity-file.ts';
import { parseAllowedOrigins, type AllowedOrigins, type Identity } from '../../protocol/index.ts';

const BACKENDS: readonly BackendChoice[] = ['auto', 'webgpu', 'cpu'];

export function backendOption(text: string | undefined): BackendChoice {
  if (!BACKENDS.includes(text as BackendChoice)) throw new Error(`--backend must be webgpu, cpu or auto, not ${text} (see --help)`);
  return text as BackendChoice;
}

/** A TCP port; 0 picks a free one. */
export function portOption(text: string | undefined): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be an integer in 0..65535, not ${text} (see --help)`);
  return port;
}

/** A memory budget in MB: more than 0, or 0 too where `allowZero` (a peer that only relays). */
export function memoryOption(text: string | undefined, allowZero = false): number {
  const mb = Number(text);
  if (!Number.isFinite(mb) || mb < 0 || (!allowZero && mb === 0)) throw new Error(`--memory-mb must be a number ${allowZero ? '>= 0' : '> 0'}, not ${text} (see --help)`);
  return mb;
}

/** --allowed-origins: `*` or a comma-separated list of origins; none given is the default rule. */
export function originsOption(text: string | undefined): AllowedOrigins | undefined {
  if (!text) return undefined;
  try {
    return parseAllowedOrigins(text);
  } catch (err) {
    throw new Error(`--allowed-origins: ${(err as Error).message} (see --help)`);
  }
}

/**
 * --signal: one ws:// or wss:// URL, or several separated by commas (signaling processes of one
 * deployment sharing a Redis), used in turn: the next when the connection closes.
 */
export function signalOption(text: string | undefined): string | string[] {
  const urls = (text ?? '').split(',').map((u) => u.trim()).filter(Boolean);
  const bad = urls.find((u) => !/^wss?:\/\//.test(u));
  if (urls.length === 0 || bad !== undefined) throw new Error(`--signal must be ws:// or wss:// URLs separated by commas, not ${JSON.stringify((bad ?? text ?? '').slice(0, 200))} (see --help)`);
  return urls.length === 1 ? urls[0]! : urls;
}

/** The identity a command runs as: --identity FILE, else `<role>.key` in the state folder (AIGRID_STATE_DIR). */
export function identityOption(file: string | undefined, role: string): Promise<Identity> {
  return loadIdentityFile(file ?? defaultIdentityFile(role));
}
