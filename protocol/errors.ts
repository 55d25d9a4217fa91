// Stable error codes shared by the signaling server, the mesh, the serving peers and the SDK.
// Errors cross process, worker and extension boundaries as plain {name, code, message}; a code
// that arrives from elsewhere goes through codeOf(), the one place an unknown code is mapped.

export const ERROR_HINTS = {
  ERR_MALFORMED_JSON: 'Send each signaling frame as one UTF-8 JSON object.',
  ERR_INVALID_MESSAGE: 'The frame does not match its schema; see protocol/signaling.ts.',
  ERR_UNKNOWN_TYPE: 'Use one of the message types listed in protocol/signaling.ts.',
  ERR_FRAME_TOO_LARGE: 'Split the payload or send it over a data channel instead.',
  ERR_PROTOCOL_VERSION: 'Upgrade the client and the server to the same protocol version.',
  ERR_NOT_JOINED: 'Send hello first.',
  ERR_BAD_SIGNATURE: 'The hello was not signed by the key it names over this connection\'s challenge (forged or replayed); sign the challenge the server just sent.',
  ERR_IDENTITY_MISMATCH: 'The peer id is not the one derived from the public key; use peerIdOf(publicKey).',
  ERR_REPLACED: 'Another connection joined with this identity and took over; run each process with its own identity (aigrid peer --identity FILE).',
  ERR_DATA_IN_USE: 'Another running signaling server holds this data folder; give each its own (aigrid signal --data DIR).',
  ERR_DATA_CORRUPT: 'A file in the data folder cannot be read back; it is left as it is: move it away (or restore a backup) to start.',
  ERR_IDENTITY_IN_USE: 'Another running process holds this identity file; give this one its own (aigrid peer --identity FILE, or AIGRID_STATE_DIR for any command).',
  ERR_ALREADY_JOINED: 'A connection joins one network once; open another connection for another network.',
  ERR_UNKNOWN_TARGET: 'The target peer is not in this network (it may have left).',
  ERR_RATE_LIMITED: 'Slow down: the server caps messages per second per peer.',
  ERR_NETWORK_FULL: 'The network has reached its peer cap; try later or another network.',
  ERR_TOO_MANY_CONNECTIONS: 'Too many connections from this address; close some first.',
  ERR_SERVER_SHUTDOWN: 'The signaling server is stopping; reconnect later.',
  ERR_SIGNALING_CLOSED: 'The signaling connection closed; the client reconnects with backoff.',
  ERR_SIGNALING_TIMEOUT: 'The signaling server did not answer in time; check the URL and that it runs.',
  ERR_FRAME_MALFORMED: 'A data-channel frame had a bad header; the sender is not speaking this protocol version.',
  ERR_FRAME_OVERRUN: 'A data-channel frame carried more bytes than its header announced.',
  ERR_FRAME_INTERLEAVED: 'Chunks of two frames were mixed; channels must be ordered and reliable.',
  ERR_PEER_CLOSED: 'The peer connection is closed; open a new one.',
  ERR_CONNECTION_FAILED: 'WebRTC could not connect; both sides need a common ICE candidate pair.',
  ERR_CONNECT_TIMEOUT: 'The peer did not finish connecting in time.',
  ERR_FANOUT_LIMIT: 'This peer already has its maximum number of connections.',
  ERR_DECLINED: 'The remote peer declined the connection (it may be at its connection cap).',
  ERR_INVALID_ARGUMENT: 'An argument had the wrong type or range; see the message.',
  ERR_NO_WEBGPU: 'No WebGPU adapter here; use the CPU backend or a browser/driver with WebGPU.',
  ERR_GPU_FEATURE: 'The adapter lacks a feature this path needs (e.g. shader-f16); use the f32 path.',
  ERR_GPU_LIMIT: 'The request exceeds an adapter limit named in the message; split the work.',
  ERR_GPU_DEVICE_LOST: 'The GPU device was lost (driver reset, tab in background); create a new context.',
  ERR_GPU_ERROR: 'The GPU reported a validation or out-of-memory error; see the message.',
  ERR_SHAPE_MISMATCH: 'A tensor has the wrong shape for this op; the message names the tensor and the shape expected.',
  ERR_DTYPE_UNSUPPORTED: 'This op has no path for that dtype; the message lists the ones it has.',
  ERR_CHECKPOINT_CORRUPT: 'The checkpoint file is truncated or its header is invalid; download it again.',
  ERR_TENSOR_MISSING: 'The checkpoint lacks a tensor the architecture needs; check the model id and revision.',
  ERR_UNSUPPORTED_MODEL: 'This architecture or config field is not supported yet; the message names it.',
  ERR_SESSION_EVICTED: 'This session\'s KV cache was evicted to make room for others; start the generation again (replay the tokens).',
  ERR_KV_BUDGET: 'The KV cache does not fit the memory budget; raise the budget or shorten the context.',
  ERR_TOO_MANY_SESSIONS: 'This client (or all clients together) has as many sessions open on this peer as it takes; release finished sessions or try another route.',
  ERR_NO_ROUTE: 'No chain of ready peers covers the model now; wait for peers to load it or add peers.',
  ERR_INSUFFICIENT_MEMORY: 'The peers of this network together lack the memory to hold the model; the message says how much more.',
  ERR_PEER_TIMEOUT: 'A peer on the route did not answer in time; the client takes another route and replays.',
  ERR_FETCH_FAILED: 'A download failed; check the URL, the network and that the server supports Range requests.',
  ERR_INVALID_BLOCK: 'The block spec is not valid; the message names the field (see protocol/blocks.ts).',
  ERR_UNKNOWN_BLOCK: 'No block by that URI on this network; list them with grid.blocks.list().',
  ERR_BLOCK_EXISTS: 'A block by that URI exists already; update it, or create it with another version.',
  ERR_INVALID_VDAG: 'The vDAG spec cannot run; the message names the node and why (see protocol/vdag.ts).',
  ERR_UNKNOWN_VDAG: 'No vDAG by that id on this network; list them with grid.vdags.list().',
  ERR_VDAG_EXISTS: 'A vDAG by that id exists already; update it, or create it under another id.',
  ERR_UNKNOWN_POLICY: 'No policy by that id on this network; list them with grid.policies.list().',
  ERR_POLICY_EXISTS: 'A policy by that id exists already; update it, or create it under another id.',
  ERR_NOT_AVAILABLE: 'This server does not offer that in its set-up; the message says what and why.',
  ERR_REGISTRY_FULL: 'The network holds as many of these as it takes; delete some first.',
  ERR_INSUFFICIENT_CREDITS: 'This network requires credits, and this key holds less than one token through the model costs; contribute (serve layers) to earn some, or ask the network\'s owner for a grant.',
  ERR_BAD_USAGE: 'A usage report the server does not take: for a client, peer, model or layers the coordinator did not route together lately, or more than the time since the last report allows; the message says which.',
  ERR_UNKNOWN_MODEL: 'No model by that id is served on this network; list them with grid.models.list() or serve one (aigrid serve).',
  ERR_ABORTED: 'The request was aborted by its AbortSignal; nothing more runs for it on any peer.',
  ERR_OVERLOADED: 'The gateway has as many requests running and waiting as it takes; retry after the seconds its Retry-After header says (its operator can raise --max-concurrent or --max-queue).',
  ERR_DEADLINE_EXCEEDED: 'The request did not finish within the gateway\'s deadline (--request-timeout); ask for fewer tokens, or retry when the grid is less busy.',
  ERR_UNKNOWN_CODE: 'A peer or server reported an error code this version does not know (it may be newer); the message carries its words.',
  ERR_BAD_EVIDENCE: 'An accusation whose evidence does not hold (a signature, proof, digest or ticket fails); the accuser\'s reports are ignored for an hour.',
  ERR_INCONCLUSIVE: 'The evidence is genuine but does not put one hop in a clear minority of three runs; nothing is counted.',
  ERR_PERMISSION_DENIED: 'Not allowed: a site the person did not allow to use AIGrid (they can in the extension\'s options page), a page of a foreign origin, or a change to a model that another peer served.',
  ERR_POLICY_INVALID: 'The policy does not compile, or its script does not define function eval(parameters, input, context) within its limits; the message says why (and the line).',
  ERR_POLICY_FAILED: 'The policy threw while it ran; the message carries its error. Hooks fall back to their default meanwhile.',
  ERR_POLICY_LIMIT: 'The policy ran past a limit of its sandbox (time, memory, stack, or the size of its arguments or output); the message names it. Hooks fall back to their default meanwhile.',
  ERR_POLICY_OUTPUT: 'The policy returned what is not plain JSON (a function, undefined, NaN, a BigInt, a cycle, an object of a class) or not the shape its hook expects. Hooks fall back to their default meanwhile.',
  ERR_POLICY_BUSY: 'The server\'s policy sandbox has as many calls of this network (or in all) waiting as it takes, or none finished waiting in time; the hook used its default (a joining peer is asked to try again).',
  ERR_POLICY_HOOK_TAKEN: 'The network has a policy for that server hook already (one each for route, placement, admission and quota); update that one, or delete it first.',
  ERR_ADMISSION_REFUSED: 'The network\'s admission policy does not let this peer join; the message carries its reason. Ask the network\'s owner.',
  ERR_QUOTA_EXCEEDED: 'The network\'s quota policy refuses this client more route requests for now; wait, or ask the network\'s owner.',
} as const;

export type ErrorCode = keyof typeof ERROR_HINTS;

export const ERROR_CODES = Object.keys(ERROR_HINTS) as ErrorCode[];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_HINTS, value);
}

/** A code received from another party: itself when this version knows it, else ERR_UNKNOWN_CODE. */
export function codeOf(value: unknown): ErrorCode {
  return isErrorCode(value) ? value : 'ERR_UNKNOWN_CODE';
}

/** The one error type of AIGrid: a stable code, a message, and a hint on how to fix it. */
export class AigridError extends Error {
  override name = 'AigridError';
  readonly code: ErrorCode;
  readonly hint: string;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERROR_HINTS[code], options);
    this.code = code;
    this.hint = ERROR_HINTS[code];
  }

  toJSON(): SerializedError {
    return { name: this.name, code: this.code, message: this.message };
  }

  /** Rebuilds an error that crossed a boundary as {name, code, message}. */
  static fromJSON(value: SerializedError): AigridError {
    return new AigridError(codeOf(value.code), value.message);
  }
}

/** The code to report for an error caught here: an AigridError's own, else ERR_INVALID_ARGUMENT (a thrown TypeError and the like come from bad input). */
export function errorCode(err: unknown): ErrorCode {
  return err instanceof AigridError ? err.code : 'ERR_INVALID_ARGUMENT';
}

/** An error's message, cut to what a failure report carries. */
export function errorMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 1024);
}

export interface SerializedError {
  name: string;
  code: string;
  message: string;
}
