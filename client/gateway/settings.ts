// The gateway's options, their defaults, and the check that each is in range (a bad value is
// refused when the gateway starts, naming the option, rather than misbehaving under load).
import { AigridError, type AllowedOrigins } from '../../protocol/index.ts';

export interface GatewayOptions {
  /** When set, every request needs `Authorization: Bearer <apiKey>` (preflights excepted). */
  apiKey?: string;
  /** Largest request body (default 1 MiB); larger ones are answered 413. */
  maxBodyBytes?: number;
  /** Longest a request body may take to arrive (default 30 s); slower ones are answered 408. */
  bodyTimeoutMs?: number;
  /** Longest a stream waits on a client that reads nothing (default 60 s); then it is dropped. */
  writeTimeoutMs?: number;
  /** Where failures that are the gateway's own (500s) are told. */
  log?: (line: string) => void;
  /** Page origins allowed besides loopback pages and extensions (protocol/origins.ts); `*` for any. */
  allowedOrigins?: AllowedOrigins;
  /** Whether the server it is mounted on listens on loopback only (default true: the strict rule). */
  loopbackBound?: boolean;
  /** Completions generating at once (default 16). */
  maxConcurrent?: number;
  /** Completions waiting for a turn (default 64); more are answered 429 ERR_OVERLOADED with Retry-After. */
  maxQueued?: number;
  /** Longest a request may take, waiting included (default 120 s): then 504 ERR_DEADLINE_EXCEEDED, or an error event on a stream. */
  requestTimeoutMs?: number;
  /** How long close() lets running requests finish (default 10 s) before ending them with ERR_SERVER_SHUTDOWN. */
  shutdownGraceMs?: number;
  /** Generations started per second (default: a share of the signaling server's route and message rates, from its welcome). */
  routesPerSecond?: number;
  /** How long one model list from the server answers every request (default 1.5 s). */
  modelListTtlMs?: number;
  /** A model's client (tokenizer, head, routes) is let go after this long unused (default 10 min). */
  modelIdleMs?: number;
  /** Most models whose clients are kept at once (default 8). */
  maxModels?: number;
}

export type Settings = Required<Omit<GatewayOptions, 'apiKey' | 'allowedOrigins' | 'loopbackBound' | 'routesPerSecond'>> & { routesPerSecond?: number };

export function settingsOf(options: GatewayOptions): Settings {
  const settings: Settings = {
    maxBodyBytes: options.maxBodyBytes ?? 1 << 20,
    bodyTimeoutMs: options.bodyTimeoutMs ?? 30_000,
    writeTimeoutMs: options.writeTimeoutMs ?? 60_000,
    log: options.log ?? (() => {}),
    maxConcurrent: options.maxConcurrent ?? 16,
    maxQueued: options.maxQueued ?? 64,
    requestTimeoutMs: options.requestTimeoutMs ?? 120_000,
    shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
    routesPerSecond: options.routesPerSecond,
    modelListTtlMs: options.modelListTtlMs ?? 1_500,
    modelIdleMs: options.modelIdleMs ?? 10 * 60_000,
    maxModels: options.maxModels ?? 8,
  };
  integer('maxConcurrent', settings.maxConcurrent, 1);
  integer('maxQueued', settings.maxQueued, 0);
  integer('maxModels', settings.maxModels, 1);
  for (const name of ['maxBodyBytes', 'bodyTimeoutMs', 'writeTimeoutMs', 'requestTimeoutMs', 'modelIdleMs'] as const) positive(name, settings[name]);
  for (const name of ['shutdownGraceMs', 'modelListTtlMs'] as const) {
    if (!(settings[name] >= 0) || !Number.isFinite(settings[name])) invalid(name, 'a number >= 0', settings[name]);
  }
  if (settings.routesPerSecond !== undefined) positive('routesPerSecond', settings.routesPerSecond);
  // Timers past 2^31 ms fire at once in Node.
  for (const name of ['requestTimeoutMs', 'shutdownGraceMs', 'modelIdleMs'] as const) {
    if (settings[name] > 2 ** 31 - 1) invalid(name, `at most ${2 ** 31 - 1} ms`, settings[name]);
  }
  return settings;
}

function integer(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) invalid(name, `an integer >= ${min}`, value);
}

function positive(name: string, value: number): void {
  if (!(value > 0) || !Number.isFinite(value)) invalid(name, 'a number > 0', value);
}

function invalid(name: string, what: string, value: unknown): never {
  throw new AigridError('ERR_INVALID_ARGUMENT', `${name} must be ${what}, got ${String(value)}`);
}
