// The mesh: signaling connection, WebRTC links and binary frames. Knows nothing of models.
export { Mesh, startMesh, type MeshOptions, type MeshEvents } from './mesh.ts';
export { PeerLink, type PeerLinkOptions } from './peer-link.ts';
export { SignalingClient, type SignalingState } from './signaling-client.ts';
export { detectCapabilities, describeGpu, measureCpuGflops } from './capabilities.ts';
export type { MeshPlatform, WrtcImplementation, SocketConstructor } from './platform.ts';
