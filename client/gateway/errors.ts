// Errors as OpenAI's API answers them: an HTTP status and {"error":{message,type,param,code}}.
// The grid's AigridError codes map to statuses a client can act on (fix the request, pick another
// model, retry later); `code` keeps the ERR_* code where OpenAI has no code of its own.
import { AigridError, type ErrorCode } from '../../protocol/index.ts';

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** An error the gateway answers with: status, OpenAI's error fields, and extra headers. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get type(): string {
    return this.status >= 500 ? 'server_error' : 'invalid_request_error';
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** Grid conditions that pass: no ready chain of peers, or no way to reach the network right now. */
const UNAVAILABLE: ReadonlySet<ErrorCode> = new Set([
  'ERR_NO_ROUTE',
  'ERR_INSUFFICIENT_MEMORY',
  'ERR_PEER_TIMEOUT',
  'ERR_PEER_CLOSED',
  'ERR_CONNECTION_FAILED',
  'ERR_CONNECT_TIMEOUT',
  'ERR_SIGNALING_CLOSED',
  'ERR_SIGNALING_TIMEOUT',
  'ERR_SERVER_SHUTDOWN',
  'ERR_RATE_LIMITED',
]);

/** Hints that name SDK calls, said as an HTTP client would do it. */
const HTTP_HINTS: Partial<Record<ErrorCode, string>> = {
  ERR_UNKNOWN_MODEL: 'No model by that id is served on this network; list them with GET /v1/models, or serve one (aigrid serve).',
};

/** Any failure as the ApiError to answer with; `internal` is set when it is our fault (500). */
export function apiErrorOf(err: unknown): { error: ApiError; internal: boolean } {
  if (err instanceof ApiError) return { error: err, internal: false };
  if (!(err instanceof AigridError)) return { error: new ApiError(500, 'internal error in the gateway', null), internal: true };
  const message = `${err.message.replace(/\.$/, '')}. Hint: ${HTTP_HINTS[err.code] ?? err.hint}`;
  if (err.code === 'ERR_INVALID_ARGUMENT' || err.code === 'ERR_MALFORMED_JSON') {
    return { error: new ApiError(400, message, err.code, paramOf(err.message)), internal: false };
  }
  if (err.code === 'ERR_UNKNOWN_MODEL') return { error: new ApiError(404, message, 'model_not_found', 'model'), internal: false };
  if (err.code === 'ERR_UNKNOWN_VDAG' || err.code === 'ERR_UNKNOWN_BLOCK') return { error: new ApiError(404, message, err.code), internal: false };
  // A vDAG that no longer compiles (a block it names was deleted), or a node this grid cannot run yet.
  if (err.code === 'ERR_INVALID_VDAG') return { error: new ApiError(422, message, err.code), internal: false };
  if (err.code === 'ERR_NOT_AVAILABLE') return { error: new ApiError(501, message, err.code), internal: false };
  // OpenAI answers an exhausted balance or quota 429 with code insufficient_quota; waiting does not help.
  if (err.code === 'ERR_INSUFFICIENT_CREDITS' || err.code === 'ERR_QUOTA_EXCEEDED') return { error: new ApiError(429, message, 'insufficient_quota'), internal: false };
  if (UNAVAILABLE.has(err.code)) return { error: new ApiError(503, message, err.code, null, { 'Retry-After': '5' }), internal: false };
  return { error: new ApiError(500, message, err.code), internal: true };
}

/** The SDK names the field first ("temperature must be ...", "messages[0].role must ..."). */
function paramOf(message: string): string | null {
  return /^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)?(?:\[\d+\])?) (?:must|is|are) /.exec(message)?.[1] ?? null;
}
