// The extension's shared vocabulary: the provider's methods, the messages that carry them from a
// page to the engine and back (page <-> content script <-> service worker <-> offscreen engine),
// the control messages between the extension's own contexts, the settings and their defaults, and
// how errors cross each boundary ({name, code, message}). Types and small guards only: every
// context (pages, content scripts, the service worker, the offscreen document) imports this file.
import { AigridError, isErrorCode, type ErrorCode, type SerializedError } from '../../protocol/errors.ts';
import type { LoadingProgress, ServingStatus } from '../../client/grid/peer.ts';
import { isLoopbackHost } from '../../protocol/origins.ts';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParams,
  Completion,
  CompletionChunk,
  CompletionCreateParams,
  GenerateOutput,
  GenerateParams,
  ModelInfo,
  ModelList,
  RequestOptions,
  Stream,
} from '../../client/sdk/types.ts';

// ---- The provider: what a page may call on window.aigrid -------------------------------------

/**
 * window.aigrid: the SDK's Grid interface for requests (not contribute or serve: the extension
 * contributes on its own). Streams are async iterables of OpenAI chunks with a `controller`;
 * failures are AigridErrors (the class is exposed for instanceof checks).
 */
export interface AigridProvider {
  /** Tells pages that this window.aigrid is the extension's provider. */
  readonly provider: 'aigrid-extension';
  readonly version: string;
  readonly AigridError: typeof AigridError;
  models: {
    list(): Promise<ModelList>;
    retrieve(id: string): Promise<ModelInfo>;
  };
  chat: {
    completions: {
      create(params: ChatCompletionCreateParams & { stream: true }, options?: RequestOptions): Promise<Stream<ChatCompletionChunk>>;
      create(params: ChatCompletionCreateParams & { stream?: false | null }, options?: RequestOptions): Promise<ChatCompletion>;
      create(params: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletion | Stream<ChatCompletionChunk>>;
    };
  };
  completions: {
    create(params: CompletionCreateParams & { stream: true }, options?: RequestOptions): Promise<Stream<CompletionChunk>>;
    create(params: CompletionCreateParams & { stream?: false | null }, options?: RequestOptions): Promise<Completion>;
    create(params: CompletionCreateParams, options?: RequestOptions): Promise<Completion | Stream<CompletionChunk>>;
  };
  generate(params: GenerateParams): Promise<GenerateOutput>;
}

/** The page event dispatched on window when the provider is in place (it is set at document_start). */
export const READY_EVENT = 'aigrid:ready';

/** The SDK methods the provider proxies, by their path on the SDK's Grid. */
export const PROVIDER_METHODS = ['models.list', 'models.retrieve', 'chat.completions.create', 'completions.create', 'generate'] as const;
export type ProviderMethod = (typeof PROVIDER_METHODS)[number];

export function isProviderMethod(value: unknown): value is ProviderMethod {
  return typeof value === 'string' && (PROVIDER_METHODS as readonly string[]).includes(value);
}

/** The code a page's call fails with when the person refused (or has not yet allowed) its origin. */
export const PERMISSION_DENIED: ErrorCode = 'ERR_PERMISSION_DENIED';

// ---- Page <-> extension messages (window.postMessage, then the content script's Port) ----------

/** A call from a page. `id` is unique per page (per Port); params are JSON (no functions, no signals). */
export interface CallMessage {
  type: 'call';
  id: number;
  method: ProviderMethod;
  /** The method's one argument (a model id for models.retrieve, none for models.list). */
  params?: unknown;
  /** generate(): send each token as it is made (the page passed onToken). */
  tokens?: boolean;
  /**
   * Set by the isolated content script, never by the page: whether the page had a user gesture
   * (transient activation) when it made the call. Only such a call may open the permission prompt.
   */
  gesture?: boolean;
}

/** The page gave up on a call (its AbortSignal, stream.controller, or leaving a stream's loop). */
export interface AbortMessage {
  type: 'abort';
  id: number;
}

export type PageMessage = CallMessage | AbortMessage;

export type ReplyMessage =
  /** The call's value; for a stream, that the stream has started (chunks follow). */
  | { type: 'result'; id: number; value: unknown; stream?: boolean }
  /** One chunk of a streamed reply. */
  | { type: 'chunk'; id: number; chunk: unknown }
  /** A generated token (generate() with onToken). */
  | { type: 'token'; id: number; token: number; step: number }
  /** A stream ended normally. */
  | { type: 'end'; id: number }
  /** The call failed, before or during its stream. */
  | { type: 'error'; id: number; error: SerializedError };

/** Sent by the engine every few seconds while calls run, so the relaying service worker stays alive. */
export interface KeepAliveMessage {
  type: 'keepalive';
}
export const KEEPALIVE_MS = 15_000;

export function isPageMessage(value: unknown): value is PageMessage {
  const m = value as { type?: unknown; id?: unknown; method?: unknown; tokens?: unknown } | null;
  if (!m || typeof m !== 'object' || !Number.isSafeInteger(m.id)) return false;
  if (m.type === 'abort') return true;
  const g = (m as { gesture?: unknown }).gesture;
  return m.type === 'call' && isProviderMethod(m.method) && (m.tokens === undefined || typeof m.tokens === 'boolean') && (g === undefined || typeof g === 'boolean');
}

export function isReplyMessage(value: unknown): value is ReplyMessage {
  const m = value as { type?: unknown; id?: unknown } | null;
  return !!m && typeof m === 'object' && Number.isSafeInteger(m.id) && ['result', 'chunk', 'token', 'end', 'error'].includes(m.type as string);
}

/** How messages between the page's world and the content script are tagged on window.postMessage. */
export const WINDOW_CHANNEL = 'aigrid-extension';
export interface WindowEnvelope {
  channel: typeof WINDOW_CHANNEL;
  to: 'extension' | 'page';
  message: PageMessage | ReplyMessage | { type: 'disconnected' };
}

/** Port names: a page's content script to the service worker, the service worker to the engine. */
export const PAGE_PORT = 'aigrid-page';
export const ENGINE_PORT = 'aigrid-engine';

// ---- Errors across boundaries ----------------------------------------------------------------

/** Any thrown value as {name, code, message}: AigridErrors keep their code, others become ERR_INVALID_MESSAGE. */
export function toWireError(err: unknown): SerializedError {
  if (err instanceof AigridError) return err.toJSON();
  const e = err as { name?: unknown; code?: unknown; message?: unknown } | null;
  const code = isErrorCode(e?.code) ? e.code : 'ERR_INVALID_MESSAGE';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return { name: 'AigridError', code, message };
}

export function fromWireError(error: SerializedError): AigridError {
  return AigridError.fromJSON(error);
}

// ---- Settings (chrome.storage.local) ---------------------------------------------------------

export interface Settings {
  /** The signaling server, ws:// or wss://. */
  signalUrl: string;
  network: string;
  /** Memory offered to the network, in MB. */
  memoryBudgetMB: number;
  /** Contribute only while chrome.idle says the person is away (idle or locked). */
  onlyWhenIdle: boolean;
  /** Contribute only while the device charges (navigator.getBattery; ignored where unknown). */
  onlyOnAC: boolean;
}

export const DEFAULT_SETTINGS: Settings = {
  signalUrl: 'ws://127.0.0.1:8787/signal',
  network: 'default',
  memoryBudgetMB: 1024,
  onlyWhenIdle: false,
  onlyOnAC: false,
};

export type OriginDecision = 'allow' | 'deny';
export interface OriginRecord {
  decision: OriginDecision;
  /** When the person decided (ms since the epoch). */
  at: number;
}

/** chrome.storage.local keys; each origin's decision has a key of its own (no read-modify-write races). */
export const STORAGE = { settings: 'settings', enabled: 'enabled', originPrefix: 'origin:' } as const;

export function checkSettings(value: Partial<Settings>): string | null {
  if (value.signalUrl !== undefined && !/^wss?:\/\/[^\s/]+/.test(value.signalUrl)) return 'the signaling URL must start with ws:// or wss://';
  if (value.network !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(value.network)) return 'the network name takes 1 to 64 letters, digits, dots, dashes or underscores';
  if (value.memoryBudgetMB !== undefined && !(value.memoryBudgetMB > 0 && value.memoryBudgetMB <= 1 << 20)) return 'the memory budget must be a positive number of MB';
  return null;
}

// ---- The engine (offscreen document) and its controls ----------------------------------------

/** What the service worker asks of the engine. */
export interface EngineConfig {
  signalUrl: string;
  network: string;
  memoryBudgetMB: number;
  /** On, and the idle condition holds (the engine checks the power condition itself). */
  contribute: boolean;
  onlyOnAC: boolean;
}

export type PowerState = 'ac' | 'battery' | 'unknown';

export interface EngineStatus {
  signalUrl: string;
  network: string;
  /** The contributing peer's connection: off, connecting, or serving as a peer of the network. */
  state: 'off' | 'connecting' | 'contributing' | 'paused-battery' | 'failed';
  peerId: string | null;
  memoryBudgetMB: number;
  /** The coordinator's assignments to this peer (model, layers, state, sessions, tokens). */
  assignments: ServingStatus[];
  progress: LoadingProgress | null;
  tokensServed: number;
  power: PowerState;
  webgpu: boolean;
  error: SerializedError | null;
}

/** runtime.sendMessage between the extension's own contexts; `to` names the one that answers. */
export type ControlMessage =
  | { to: 'engine'; type: 'configure'; config: EngineConfig }
  | { to: 'engine'; type: 'status' }
  | { to: 'background'; type: 'engine-ready' }
  | { to: 'background'; type: 'state' }
  | { to: 'background'; type: 'reconcile' };

/** What the popup shows: settings, the on/off switch, the idle state and the engine's status. */
export interface ExtensionState {
  settings: Settings;
  enabled: boolean;
  idle: 'active' | 'idle' | 'locked';
  /** Why contribution waits although it is on, if it does. */
  waiting: 'idle' | 'battery' | null;
  engine: EngineStatus | null;
}

export function isControlMessage(value: unknown, to: ControlMessage['to']): value is ControlMessage {
  const m = value as { to?: unknown; type?: unknown } | null;
  return !!m && typeof m === 'object' && m.to === to && typeof m.type === 'string';
}

/**
 * Pages that may use window.aigrid: https, and plain http only on this machine (localhost,
 * 127.0.0.0/8, [::1]), where no one on the path can pose as the site.
 */
export function pageOriginAllowed(origin: string): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname));
}
