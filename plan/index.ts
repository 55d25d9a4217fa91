// Planning shared by the signaling server and clients: where layers go, and which peers to chain.
export * from './placement.ts';
export * from './route.ts';
