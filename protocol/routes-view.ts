// The routes the coordinator handed out lately, as the HTTP view `/api/networks/:name/routes`
// answers them (signaling/recent-routes.ts) and the Network page's map draws them: each route's
// hops with the latency the hop's peer last reported, and the links those routes use.
import { z } from 'zod';
import { PeerIdSchema } from './ids.ts';
import { HopSchema, MAX_REPORTED_PASS_MS, ModelIdSchema } from './serving.ts';

/** Routes remembered per network, the most recent first. */
export const MAX_RECENT_ROUTES = 64;
/** A route older than this is forgotten (sessions ask again for every generation). */
export const RECENT_ROUTE_MS = 60_000;
/** Hops kept of one route; a longer route keeps its first ones and says how many it left out. */
export const MAX_RECENT_ROUTE_HOPS = 64;

export const RouteHopViewSchema = HopSchema.extend({
  /** The median pass time the hop's peer last reported for this model (absent: no report yet). */
  latencyMs: z.number().finite().min(0).max(MAX_REPORTED_PASS_MS).optional(),
});

export const RecentRouteSchema = z.object({
  /** When it was handed out, ms since the epoch. */
  at: z.number().nonnegative(),
  modelId: ModelIdSchema,
  /** The peer that asked: hidden states leave it for the first hop and come back from the last. */
  client: PeerIdSchema,
  hops: z.array(RouteHopViewSchema).min(1).max(MAX_RECENT_ROUTE_HOPS),
  hopsLeftOut: z.number().int().positive().optional(),
});

/** Two peers that pass hidden states on some recent route, and on how many of them. */
export const RouteLinkSchema = z.object({
  from: PeerIdSchema,
  to: PeerIdSchema,
  routes: z.number().int().positive(),
});

export const RoutesViewSchema = z.object({
  network: z.string(),
  routes: z.array(RecentRouteSchema).max(MAX_RECENT_ROUTES),
  links: z.array(RouteLinkSchema).max(MAX_RECENT_ROUTES * (MAX_RECENT_ROUTE_HOPS + 1)),
});

export type RouteHopView = z.infer<typeof RouteHopViewSchema>;
export type RecentRoute = z.infer<typeof RecentRouteSchema>;
export type RouteLink = z.infer<typeof RouteLinkSchema>;
export type RoutesView = z.infer<typeof RoutesViewSchema>;
