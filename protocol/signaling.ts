// Schemas of every signaling message, client -> server and server -> client.
// The server validates every frame it receives with parseClientMessage; clients validate what the
// server sends with parseServerMessage. Unknown object keys are stripped (forward compatible).
import { z } from 'zod';
import type { ErrorCode } from './errors.ts';
import { NetworkSchema, PeerIdSchema } from './ids.ts';
import { helloPayload, NonceSchema, PublicKeySchema, SignatureSchema, toBase64Url, type Identity } from './identity.ts';
import { MAX_LOOKUP_PEERS, MAX_SIGNAL_FRAME_BYTES, PROTOCOL_VERSION } from './limits.ts';
import {
  AssignMessageSchema,
  ModelsMessageSchema,
  RouteReplySchema,
  RouteRequestSchema,
  ListModelsSchema,
  PolicyMessageSchema,
  ServeMessageSchema,
  SetPolicyMessageSchema,
  VerdictMessageSchema,
  UsageMessageSchema,
  WithdrawMessageSchema,
  StatusMessageSchema,
  UnassignMessageSchema,
} from './serving.ts';
import { ServerKeySchema } from './tickets.ts';
import { AccusationSchema } from './accusation.ts';
import { IceServerSchema, IceTransportPolicySchema, MAX_ICE_SERVERS } from './ice.ts';
import { BlocksReplySchema, BlocksRequestSchema } from './blocks.ts';
import { VdagsReplySchema, VdagsRequestSchema } from './vdag.ts';
import { PoliciesReplySchema, PoliciesRequestSchema } from './policies.ts';
import { CreditsReplySchema, CreditsRequestSchema, GrantMessageSchema } from './credits.ts';
import { PipelineTaskSchema } from './pipelines.ts';

export { NetworkSchema, PeerIdSchema };
export { isHuggingFaceId } from './ids.ts';

const shortText = z.string().max(256);

export const GpuInfoSchema = z.object({
  vendor: shortText,
  architecture: shortText,
  device: shortText,
  description: shortText,
  isFallbackAdapter: z.boolean().optional(),
  features: z.array(z.string().max(64)).max(64),
  limits: z.record(z.string().max(64), z.number()).refine((r) => Object.keys(r).length <= 64, 'at most 64 limits'),
});

export const CapabilitiesSchema = z.object({
  kind: z.enum(['browser', 'node', 'extension']),
  gpu: GpuInfoSchema.nullable(),
  memoryBudgetMB: z.number().nonnegative().max(16 * 1024 * 1024),
  /** Measured, not declared: the peer runs a short benchmark before it says hello. */
  throughput: z.object({ gflops: z.number().nonnegative().max(1e7), backend: z.enum(['webgpu', 'cpu']) }),
  agent: shortText.optional(),
  /** Whole-model pipeline tasks this peer runs (protocol/pipelines.ts); none when absent. */
  tasks: z.array(PipelineTaskSchema).max(8).optional(),
});

export const PeerInfoSchema = z.object({
  peerId: PeerIdSchema,
  capabilities: CapabilitiesSchema,
  joinedAt: z.number(),
});

const IceCandidateSchema = z.object({
  candidate: z.string().max(2048),
  sdpMid: z.string().max(64).nullable().optional(),
  sdpMLineIndex: z.number().int().min(0).max(1024).nullable().optional(),
  usernameFragment: z.string().max(256).nullable().optional(),
});

/** What simple-peer emits on 'signal' (media transceivers are not used, so not accepted). */
export const SignalDataSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('offer'), sdp: z.string().max(60_000) }),
  z.object({ type: z.literal('answer'), sdp: z.string().max(60_000) }),
  z.object({ type: z.literal('candidate'), candidate: IceCandidateSchema }),
  z.object({ type: z.literal('renegotiate'), renegotiate: z.literal(true) }),
]);

export const ClientMessageSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('hello'),
    protocolVersion: z.number().int(),
    peerId: PeerIdSchema,
    network: NetworkSchema,
    capabilities: CapabilitiesSchema,
    /** The key the peer id derives from, and its signature of the challenge (helloPayload). */
    publicKey: PublicKeySchema,
    signature: SignatureSchema,
  }),
  z.object({ type: z.literal('update'), capabilities: CapabilitiesSchema }),
  z.object({ type: z.literal('signal'), to: PeerIdSchema, data: SignalDataSchema }),
  z.object({ type: z.literal('decline'), to: PeerIdSchema, reason: shortText }),
  z.object({ type: z.literal('ping'), id: z.number().int().nonnegative() }),
  /** Asks for the directory entries of these peers (answered with `peers`): a large network's welcome lists none. */
  z.object({ type: z.literal('lookup'), id: z.number().int().nonnegative(), peerIds: z.array(PeerIdSchema).min(1).max(MAX_LOOKUP_PEERS) }),
  ServeMessageSchema,
  StatusMessageSchema,
  RouteRequestSchema,
  ListModelsSchema,
  WithdrawMessageSchema,
  SetPolicyMessageSchema,
  VerdictMessageSchema,
  /** Evidence that a hop returned wrong results (accusation.ts); answered with `judged`. */
  AccusationSchema.extend({ type: z.literal('accuse'), id: z.number().int().nonnegative() }),
  BlocksRequestSchema,
  VdagsRequestSchema,
  PoliciesRequestSchema,
  /** Credits (credits.ts): the work a client received, balances asked for, an owner's grant. */
  UsageMessageSchema,
  CreditsRequestSchema,
  GrantMessageSchema,
]);

export const LeaveReasonSchema = z.enum(['closed', 'timeout', 'replaced', 'shutdown']);

export const ServerMessageSchema = z.discriminatedUnion('type', [
  /** The first frame on every socket: hello must sign this nonce. */
  z.object({ type: z.literal('challenge'), nonce: NonceSchema }),
  /**
   * Fresh ICE servers for the links a peer opens from now on: sent before the TURN credentials of
   * the welcome expire (at half their lifetime), so a peer connected for days can still relay.
   */
  z.object({
    type: z.literal('ice'),
    iceServers: z.array(IceServerSchema).max(MAX_ICE_SERVERS),
    iceTransportPolicy: IceTransportPolicySchema.optional(),
  }),
  z.object({
    type: z.literal('welcome'),
    protocolVersion: z.number().int(),
    peerId: PeerIdSchema,
    network: NetworkSchema,
    peers: z.array(PeerInfoSchema),
    heartbeatMs: z.number().int().positive(),
    /** The network's owner: it sets who may serve, and may change or withdraw any model. */
    owner: PeerIdSchema.optional(),
    /** ICE servers for this peer's links (TURN ones with credentials minted for it; ice.ts). */
    iceServers: z.array(IceServerSchema).max(MAX_ICE_SERVERS).optional(),
    /** 'relay': the server's operator makes every link go through a TURN relay. */
    iceTransportPolicy: IceTransportPolicySchema.optional(),
    limits: z.object({ maxFrameBytes: z.number().int(), messagesPerSecond: z.number() }),
    /** The server's public key: it signs the route tickets hops check. */
    serverKey: ServerKeySchema.optional(),
    /**
     * How many peers the network has, and whether `peers` lists them all. A large network's does
     * not: its members look up the peers they need (`lookup`) and hear only about those.
     */
    directory: z.object({ total: z.number().int().nonnegative(), complete: z.boolean() }).optional(),
  }),
  /** The answer to `lookup` `id`: those of the peers asked that are in the network. */
  z.object({ type: z.literal('peers'), id: z.number().int().nonnegative(), peers: z.array(PeerInfoSchema).max(MAX_LOOKUP_PEERS) }),
  z.object({ type: z.literal('join'), peer: PeerInfoSchema }),
  z.object({ type: z.literal('update'), peer: PeerInfoSchema }),
  z.object({ type: z.literal('leave'), peerId: PeerIdSchema, reason: LeaveReasonSchema }),
  z.object({ type: z.literal('signal'), from: PeerIdSchema, data: SignalDataSchema }),
  z.object({ type: z.literal('decline'), from: PeerIdSchema, reason: shortText }),
  /** Your offer to peerId crossed theirs and lost: drop it and answer theirs. */
  z.object({ type: z.literal('glare'), peerId: PeerIdSchema }),
  z.object({ type: z.literal('pong'), id: z.number().int().nonnegative(), serverTime: z.number() }),
  z.object({
    type: z.literal('error'),
    code: z.string(),
    message: z.string(),
    /** The type of the message the error answers. */
    ref: z.string().optional(),
    /** The id of the request it answers (a route request's requestId). */
    requestId: z.number().int().nonnegative().optional(),
  }),
  AssignMessageSchema,
  UnassignMessageSchema,
  RouteReplySchema,
  ModelsMessageSchema,
  PolicyMessageSchema,
  BlocksReplySchema,
  VdagsReplySchema,
  PoliciesReplySchema,
  CreditsReplySchema,
  /** The answer to `accuse` `id`: whether it counted against the accused, else the code of why not. */
  z.object({
    type: z.literal('judged'),
    id: z.number().int().nonnegative(),
    counted: z.boolean(),
    accused: PeerIdSchema.optional(),
    code: z.string().max(64).optional(),
    message: z.string().max(1024),
  }),
]);

export type GpuInfo = z.infer<typeof GpuInfoSchema>;
export type Capabilities = z.infer<typeof CapabilitiesSchema>;
export type PeerInfo = z.infer<typeof PeerInfoSchema>;
export type SignalData = z.infer<typeof SignalDataSchema>;
export type ClientMessage = z.infer<typeof ClientMessageSchema>;
export type ServerMessage = z.infer<typeof ServerMessageSchema>;
export type LeaveReason = z.infer<typeof LeaveReasonSchema>;

export type ParseResult<T> =
  | { ok: true; message: T }
  | { ok: false; code: ErrorCode; message: string; ref?: string; requestId?: number };

const CLIENT_TYPES = new Set(ClientMessageSchema.options.map((o) => o.shape.type.value));
const SERVER_TYPES = new Set(ServerMessageSchema.options.map((o) => o.shape.type.value));

function byteLength(frame: string | Uint8Array): number {
  return typeof frame === 'string' ? new TextEncoder().encode(frame).length : frame.byteLength;
}

function parseWith<T>(
  schema: z.ZodType<T>,
  types: Set<string>,
  frame: string | Uint8Array,
  maxBytes: number,
  precheck?: (value: { type: string }) => ParseResult<T> | undefined,
): ParseResult<T> {
  const size = byteLength(frame);
  if (size > maxBytes) {
    return { ok: false, code: 'ERR_FRAME_TOO_LARGE', message: `frame of ${size} bytes exceeds ${maxBytes}` };
  }
  let value: unknown;
  try {
    value = JSON.parse(typeof frame === 'string' ? frame : new TextDecoder('utf-8', { fatal: true }).decode(frame));
  } catch (err) {
    return { ok: false, code: 'ERR_MALFORMED_JSON', message: `not JSON: ${(err as Error).message.slice(0, 120)}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, code: 'ERR_INVALID_MESSAGE', message: 'a message must be a JSON object' };
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string' || !types.has(type)) {
    const shown = typeof type === 'string' ? JSON.stringify(type.slice(0, 40)) : String(typeof type);
    return { ok: false, code: 'ERR_UNKNOWN_TYPE', message: `unknown message type ${shown}` };
  }
  const early = precheck?.(value as { type: string });
  if (early) return early;
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : type;
    const failed: ParseResult<T> = { ok: false, code: 'ERR_INVALID_MESSAGE', message: `${where}: ${issue?.message ?? 'invalid'}`, ref: type };
    // A refused request still names its id when it has a usable one, so the asker settles it.
    const requestId = (value as { requestId?: unknown }).requestId;
    if (typeof requestId === 'number' && Number.isSafeInteger(requestId) && requestId >= 0) failed.requestId = requestId;
    return failed;
  }
  return { ok: true, message: parsed.data };
}

/** Validates one frame a client sent to the server. Never throws. */
export function parseClientMessage(frame: string | Uint8Array, maxBytes = MAX_SIGNAL_FRAME_BYTES): ParseResult<ClientMessage> {
  return parseWith(ClientMessageSchema, CLIENT_TYPES, frame, maxBytes, otherVersion);
}

/** A hello of another protocol version is named as such before its fields are checked (they differ by version). */
function otherVersion(value: { type: string; protocolVersion?: unknown }): ParseResult<ClientMessage> | undefined {
  const version = value.protocolVersion;
  if (value.type !== 'hello' || !Number.isInteger(version) || version === PROTOCOL_VERSION) return undefined;
  return { ok: false, code: 'ERR_PROTOCOL_VERSION', message: `protocol version ${String(version)} is not ${PROTOCOL_VERSION}`, ref: 'hello' };
}

/** Validates one frame the server sent to a client. Never throws. */
export function parseServerMessage(frame: string | Uint8Array, maxBytes = Infinity): ParseResult<ServerMessage> {
  return parseWith(ServerMessageSchema, SERVER_TYPES, frame, maxBytes);
}

/** The hello that joins `network` as `identity`, signing the server's challenge. */
export async function signedHello(identity: Identity, nonce: string, network: string, capabilities: Capabilities): Promise<ClientMessage> {
  const signature = toBase64Url(await identity.sign(helloPayload(nonce, network, identity.peerId)));
  return { type: 'hello', protocolVersion: PROTOCOL_VERSION, peerId: identity.peerId, network, capabilities, publicKey: identity.publicKey, signature };
}
