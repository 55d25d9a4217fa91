// Serving a model across peers: the serving peer (GridPeer) and the client's two route shapes,
// RemoteChain (the client's head around layers served by peers) and RemoteModel (the whole model
// served by peers). Joins the model runtime and the mesh; Node-only pieces are in ./node.ts.
export { GridPeer, DEFAULT_SESSION_IDLE_MS, DEFAULT_STATUS_INTERVAL_MS, type GridPeerEvents, type GridPeerOptions, type LoadingProgress, type ServingStatus } from './peer.ts';
export { type HeadParts, type ShardSettings } from './assignment.ts';
export { RemoteChain, type RemoteChainOptions } from './client.ts';
export { RemoteModel, type RemoteModelOptions } from './remote-model.ts';
export { DEFAULT_CHUNK_TOKENS, DEFAULT_ROUTE_WAIT_MS, MIN_CHUNK_TOKENS, type FailoverEvent, type RouteOptions, type RouteWaitEvent } from './route-runner.ts';
export { RouteFailure } from './remote-session.ts';
export { difference, majority } from '../../protocol/index.ts';
export { Verifier, type CheckEvent, type PeerVerdict, type VerifyOptions } from './verifier.ts';
export { explicitRoutes, layerOutlook, meshRoutes, PeerLatency, signalingRoutes, type LayerOutlook, type LayerRange, type RouteSource } from './routes.ts';
export { DecodeBatcher, type BatchStats } from './decode-batcher.ts';
export { defaultModelId, modelSpecFromCheckpoint, modelSpecFromConfig, weightsPerLayer, type ModelSpecOptions } from './model-spec.ts';
