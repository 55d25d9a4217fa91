// Where a client's routes come from: the coordinator (over signaling), or a fixed list of
// alternatives. Either way a failed peer is excluded from the next route asked for.
import type { SignalingClient } from '../mesh/signaling-client.ts';
import { AigridError, type Hop } from '../protocol/index.ts';
import { describeRoute } from './wire.ts';

/** A chain of hops covering the model that avoids the excluded peers; rejects ERR_NO_ROUTE when there is none. */
export type RouteSource = (exclude: readonly string[]) => Promise<Hop[]>;

/** The first of the given routes that avoids every excluded peer. */
export function explicitRoutes(routes: readonly (readonly Hop[])[]): RouteSource {
  return async (exclude) => {
    const avoid = new Set(exclude);
    const route = routes.find((hops) => hops.every((h) => !avoid.has(h.peerId)));
    if (!route) {
      const tried = routes.map((r) => describeRoute(r)).join('; ');
      throw new AigridError('ERR_NO_ROUTE', `every given route passes a failed peer (${[...avoid].join(', ')}): ${tried}`);
    }
    return route.map((h) => ({ ...h }));
  };
}

/** Routes chosen by the coordinator, asked for over the signaling connection. */
export function signalingRoutes(signaling: SignalingClient, modelId: string, options: { timeoutMs?: number } = {}): RouteSource {
  return (exclude) => signaling.requestRoute(modelId, { exclude: [...exclude].slice(0, 64), timeoutMs: options.timeoutMs });
}
