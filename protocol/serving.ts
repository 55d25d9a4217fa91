// Schemas for serving a model across peers: the model a network serves, the coordinator's layer
// assignments, status reports, and route requests. Used inside signaling messages (signaling.ts).
import { z } from 'zod';
import { PeerIdSchema } from './ids.ts';
import { RouteTicketSchema } from './tickets.ts';
import { PipelineTaskSchema } from './pipelines.ts';
import { CreditRulesSchema, MAX_USAGE_ENTRIES, ReceivedUsageSchema, ServedUsageSchema } from './credits.ts';

export const ModelIdSchema = z.string().regex(/^[A-Za-z0-9._\/-]{1,192}$/, 'modelId: 1-192 of [A-Za-z0-9._/-]');

/** What the coordinator needs to place a model, and what a peer needs to load its part. */
export const ModelSpecSchema = z.object({
  modelId: ModelIdSchema,
  /** Where peers load weights from: a folder URL or a Hugging Face id (with baseUrl for a mirror). */
  source: z.string().min(1).max(2048),
  baseUrl: z.string().max(2048).optional(),
  revision: z.string().max(128).optional(),
  numLayers: z.number().int().positive().max(4096),
  hiddenSize: z.number().int().positive().max(65535),
  /** Bytes one layer takes on a peer (weights in weightDtype plus its KV budget share). */
  layerBytes: z.number().int().positive(),
  weightDtype: z.enum(['f32', 'f16', 'q8', 'q4']),
  /** Each layer is held by at least this many peers when there are enough. */
  replication: z.number().int().min(1).max(16),
  /**
   * Light clients welcome: peers whose range starts at layer 0 also hold the embedding, and those
   * whose range ends at the last layer the final norm and LM head, so a client may keep only the
   * tokenizer and exchange token ids and logits (see the README on what each mode reveals).
   */
  light: z.boolean().optional(),
  /**
   * Bytes of the head parts (embedding, final norm, LM head) a peer at either end of a light
   * model loads besides its layers; placement counts them against that peer's budget.
   */
  headBytes: z.number().int().positive().optional(),
  /** Shown to people next to the model (e.g. that a demo checkpoint has random weights). */
  notice: z.string().max(256).optional(),
  /**
   * A whole-model pipeline block (protocol/pipelines.ts): one "layer" that is the whole model,
   * placed only on peers that list the task among their capabilities.
   */
  pipeline: z.object({ task: PipelineTaskSchema }).optional(),
});

export const HopSchema = z.object({
  peerId: PeerIdSchema,
  start: z.number().int().nonnegative(),
  end: z.number().int().positive(),
});

export const ServingStateSchema = z.enum(['loading', 'ready', 'failed']);

export const ModelCoverageSchema = z.object({
  model: ModelSpecSchema,
  /** Per layer: how many peers are assigned it, and how many of those report ready. */
  assigned: z.array(z.number().int().nonnegative()),
  ready: z.array(z.number().int().nonnegative()),
});

/** How often a serving peer repeats its status; the coordinator's health bound counts in these. */
export const STATUS_REPORT_MS = 10_000;
/** Bounds of the load a peer reports (far above what one peer does; only lies go past them). */
export const MAX_REPORTED_TOKENS_PER_SECOND = 1_000_000;
export const MAX_REPORTED_PASS_MS = 600_000;

/**
 * A serving peer's recent load on one assignment, over its last load window: tokens its layers ran
 * per second, the share of the window a pass was running, and the median time of a pass (decode
 * steps) and of a session's first pass (the prefill: this hop's share of the time to first token).
 * The medians are absent when no such pass ran in the window.
 */
export const LoadReportSchema = z.object({
  tokensPerSecond: z.number().finite().min(0).max(MAX_REPORTED_TOKENS_PER_SECOND),
  utilisation: z.number().finite().min(0).max(1),
  hopLatencyMs: z.number().finite().min(0).max(MAX_REPORTED_PASS_MS).optional(),
  firstTokenMs: z.number().finite().min(0).max(MAX_REPORTED_PASS_MS).optional(),
});

/** What a serving peer reports on one assignment. */
const ServingReportSchema = z.object({
  modelId: ModelIdSchema,
  start: z.number().int().nonnegative(),
  end: z.number().int().positive(),
  state: ServingStateSchema,
  sessions: z.number().int().nonnegative(),
  tokensServed: z.number().int().nonnegative(),
  /** Sent once ready (older peers send none). */
  load: LoadReportSchema.optional(),
});

/** What one peer serves, as the coordinator last heard it (the HTTP view of a network). */
export const PeerServingSchema = ServingReportSchema.extend({
  peerId: PeerIdSchema,
  /** ms since the epoch of the peer's last status (0: none yet). */
  reportedAt: z.number().nonnegative(),
});

export type ModelSpec = z.infer<typeof ModelSpecSchema>;
export type PeerServing = z.infer<typeof PeerServingSchema>;
export type LoadReport = z.infer<typeof LoadReportSchema>;
export type Hop = z.infer<typeof HopSchema>;
export type ServingState = z.infer<typeof ServingStateSchema>;
export type ModelCoverage = z.infer<typeof ModelCoverageSchema>;
export type Servers = z.infer<typeof ServersSchema>;
export type Sources = z.infer<typeof SourcesSchema>;

// Client -> server.
export const ServeMessageSchema = z.object({ type: z.literal('serve'), model: ModelSpecSchema });
export const StatusMessageSchema = ServingReportSchema.extend({
  type: z.literal('status'),
  detail: z.string().max(256).optional(),
  /** Tokens run per client and layer range since the last status (credits; protocol/credits.ts). */
  usage: z.array(ServedUsageSchema).max(MAX_USAGE_ENTRIES).optional(),
});
/** Stops serving a model: every holder unloads it. Its owner or the network's owner may. */
export const WithdrawMessageSchema = z.object({ type: z.literal('withdraw'), modelId: ModelIdSchema });
/** Who may serve new models on the network: anyone, or the listed peers (and the owner). */
export const ServersSchema = z.union([z.literal('anyone'), z.array(PeerIdSchema).max(256)]);
/**
 * Where a network's models may load weights from, besides the server's own rule: `server` (that
 * rule alone), or prefixes of the source (a URL prefix, or a hub id prefix such as `org/`) of
 * which one must match as well, to narrow it.
 */
export const SourcesSchema = z.union([z.literal('server'), z.array(z.string().min(1).max(512)).min(1).max(64)]);
/** The network's owner sets who may serve and from where; answered with a `policy` message. */
export const SetPolicyMessageSchema = z
  .object({ type: z.literal('policy'), servers: ServersSchema.optional(), sources: SourcesSchema.optional(), credits: CreditRulesSchema.partial().optional() })
  .refine((m) => m.servers !== undefined || m.sources !== undefined || m.credits !== undefined, 'policy: give servers, sources, credits or several');
/** Asks for the network's models now; the server answers with a `models` message. */
export const ListModelsSchema = z.object({ type: z.literal('models') });
/** Bounds of a route request's latencyMs map. */
export const MAX_LATENCY_ENTRIES = 64;
export const MAX_LATENCY_MS = 60_000;
export const RouteRequestSchema = z.object({
  type: z.literal('route'),
  requestId: z.number().int().nonnegative(),
  modelId: ModelIdSchema,
  /** First and end layer the route must cover (default: the whole model). */
  start: z.number().int().nonnegative().optional(),
  end: z.number().int().positive().optional(),
  /** Peers the route must avoid (e.g. one that just failed). */
  exclude: z.array(PeerIdSchema).max(64).optional(),
  /** Round trips the asker measured to peers, in ms; the coordinator weighs hops by them. */
  latencyMs: z
    .record(PeerIdSchema, z.number().finite().min(0).max(MAX_LATENCY_MS))
    .refine((m) => Object.keys(m).length <= MAX_LATENCY_ENTRIES, `latencyMs: at most ${MAX_LATENCY_ENTRIES} peers`)
    .optional(),
  /**
   * For a spot-check: the route `around` (one the coordinator gave) with peer `replace` swapped for
   * others covering its layers; `exclude` still applies to the replacement.
   */
  around: z.array(HopSchema).min(1).max(255).optional(),
  replace: PeerIdSchema.optional(),
});
/** What a client found when it checked a route's work: per peer, right, wrong or timed out. */
/** A client's count of the tokens it received through each peer since its last report (credits). */
export const UsageMessageSchema = z.object({ type: z.literal('usage'), modelId: ModelIdSchema, peers: z.array(ReceivedUsageSchema).min(1).max(MAX_USAGE_ENTRIES) });
export const VerdictMessageSchema = z.object({
  type: z.literal('verdict'),
  modelId: ModelIdSchema,
  verdicts: z.array(z.object({ peerId: PeerIdSchema, result: z.enum(['verified', 'wrong', 'timeout']) })).min(1).max(16),
});

// Server -> client.
export const AssignMessageSchema = z.object({
  type: z.literal('assign'),
  model: ModelSpecSchema,
  start: z.number().int().nonnegative(),
  end: z.number().int().positive(),
});
export const UnassignMessageSchema = z.object({ type: z.literal('unassign'), modelId: ModelIdSchema });
export const RouteReplySchema = z.object({
  type: z.literal('route'),
  requestId: z.number().int().nonnegative(),
  modelId: ModelIdSchema,
  hops: z.array(HopSchema).min(1).max(4096),
  /** The coordinator's signature of this route for the asker (hops it assigned require it). */
  ticket: RouteTicketSchema.optional(),
  /** Hops with little verified work: clients check routes through them more often. */
  newcomers: z.array(PeerIdSchema).max(255).optional(),
});
/** A network's rules: its owner (a peer id, so a key) and who may serve models. */
export const PolicyMessageSchema = z.object({ type: z.literal('policy'), network: z.string(), owner: PeerIdSchema, servers: ServersSchema, sources: SourcesSchema, credits: CreditRulesSchema.optional() });
export const ModelsMessageSchema = z.object({ type: z.literal('models'), models: z.array(ModelCoverageSchema).max(256) });
