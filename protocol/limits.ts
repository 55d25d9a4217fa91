// Defaults shared by the server and the clients, so neither side hard-codes the other's numbers.

export const PROTOCOL_VERSION = 2;

/** Largest signaling frame (one WebSocket message) the server accepts and answers. */
export const MAX_SIGNAL_FRAME_BYTES = 64 * 1024;

/** Frames above this are not even buffered: the socket is closed (1009). */
export const HARD_SIGNAL_FRAME_BYTES = 1024 * 1024;

/**
 * An accusation carries signed outputs (up to three 64 KiB chunks from each of three runs), so it
 * may be this large; only frames that open with its type get past the usual limit.
 */
export const MAX_ACCUSE_FRAME_BYTES = HARD_SIGNAL_FRAME_BYTES;
const ACCUSE_OPENING = new TextEncoder().encode('{"type":"accuse"');

/** Whether a raw frame opens as an accusation (one that may exceed the usual frame limit). */
export function opensAsAccusation(bytes: Uint8Array): boolean {
  return bytes.byteLength >= ACCUSE_OPENING.byteLength && ACCUSE_OPENING.every((b, i) => bytes[i] === b);
}

export const DEFAULT_HEARTBEAT_MS = 5_000;
/** One process holds a network of this many (each member costs about 30 KB of server memory). */
export const DEFAULT_MAX_PEERS_PER_NETWORK = 10_000;
/**
 * Networks up to this size keep a complete directory: every member is told of every join,
 * update and leave. Larger ones do not (that is quadratic): members look up the peers they need,
 * and hear only about the peers they were told of.
 */
export const DEFAULT_FULL_DIRECTORY_PEERS = 64;
/** Peers one `lookup` may ask for. */
export const MAX_LOOKUP_PEERS = 64;
export const DEFAULT_MAX_CONNECTIONS_PER_IP = 32;
export const DEFAULT_MESSAGES_PER_SECOND = 50;

/** Bounded fan-out: no peer opens more than this many WebRTC connections by default. */
export const DEFAULT_MAX_PEER_CONNECTIONS = 8;
/** A link that carried no frame for this long is closed (a later send opens a new one). */
export const DEFAULT_IDLE_LINK_MS = 120_000;

/** A data-channel frame (after reassembly) may not exceed this unless the receiver raises it. */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** Chunk size on the data channel when the negotiated max message size is unknown. */
export const DEFAULT_CHUNK_BYTES = 64 * 1024;
/** Never send chunks above this even if the channel allows more (Chromium allows 256 KiB). */
export const MAX_CHUNK_BYTES = 256 * 1024;

/** Pause writes above this many buffered bytes; resume when the buffer drains below the low mark. */
export const SEND_HIGH_WATER_BYTES = 2 * 1024 * 1024;
export const SEND_LOW_WATER_BYTES = 512 * 1024;

/**
 * Per message type, on top of the per-connection rate: [messages per second, burst]. These are the
 * messages whose handling costs the server far more than their size (re-placement, broadcasts to a
 * whole network, replies much larger than the request). A peer's own traffic stays well inside:
 * it reports status on changes and every 10 s, lists models on opening one, asks one route per
 * generation or failover.
 */
/** A connection hears at most one answer to its `models` requests per this long; more are coalesced. */
export const MODELS_REPLY_EVERY_MS = 200;

export const TYPE_RATE_LIMITS = {
  update: [1, 4],
  serve: [2, 4],
  withdraw: [2, 4],
  policy: [2, 4],
  verdict: [10, 20],
  lookup: [20, 40],
  accuse: [0.2, 3],
  status: [10, 20],
  route: [25, 50],
  blocks: [10, 20],
  vdags: [10, 20],
  policies: [10, 20],
} as const satisfies Record<string, readonly [number, number]>;
