// Serving a model across peers: the serving peer (GridPeer) and the client's remote layer chain
// (RemoteChain). Joins the model runtime and the mesh; Node-only pieces are in ./node.ts.
export { GridPeer, DEFAULT_SESSION_IDLE_MS, DEFAULT_STATUS_INTERVAL_MS, type GridPeerEvents, type GridPeerOptions, type LoadingProgress, type ServingStatus } from './peer.ts';
export { openModel, type HeadParts, type ModelOpener, type ShardSettings } from './assignment.ts';
export { lightHead } from './light.ts';
export { RemoteChain, DEFAULT_CHUNK_TOKENS, MIN_CHUNK_TOKENS, type FailoverEvent, type RemoteChainOptions } from './client.ts';
export { RouteFailure } from './remote-session.ts';
export { explicitRoutes, meshRoutes, PeerLatency, signalingRoutes, type RouteSource } from './routes.ts';
export { decodeHidden, encodeHidden, wireRound, type GridFailure, type HiddenFrame } from './wire.ts';
export { DecodeBatcher, type BatchStats } from './decode-batcher.ts';
export { defaultModelId, modelSpecFromCheckpoint, modelSpecFromConfig, weightsPerLayer, type ModelSpecOptions } from './model-spec.ts';
