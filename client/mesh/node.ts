// Node's platform for the mesh: WebRTC from @roamhq/wrtc, WebSocket from ws.
// Kept apart from the rest of client/mesh so browser bundles never pull in native modules.
import wrtc from '@roamhq/wrtc';
import { WebSocket } from 'ws';
import type { MeshPlatform, SocketConstructor, WrtcImplementation } from './platform.ts';

export function nodePlatform(): Required<MeshPlatform> {
  return { wrtc: wrtc as WrtcImplementation, WebSocket: WebSocket as unknown as SocketConstructor };
}
