// The platform is injected, so one mesh runs in browsers (built-in WebRTC and WebSocket) and in
// Node (@roamhq/wrtc and ws; see node.ts).

/** The WebRTC constructors simple-peer needs (the shape of @roamhq/wrtc's export). */
export interface WrtcImplementation {
  RTCPeerConnection: unknown;
  RTCSessionDescription: unknown;
  RTCIceCandidate: unknown;
}

/** The subset of the WebSocket API the signaling client uses (browser WebSocket and ws agree on it). */
export interface SocketLike {
  readonly readyState: number;
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type SocketConstructor = new (url: string) => SocketLike;

export interface MeshPlatform {
  /** WebRTC implementation; leave out in browsers. */
  wrtc?: WrtcImplementation;
  /** WebSocket constructor; defaults to globalThis.WebSocket. */
  WebSocket?: SocketConstructor;
}

export const SOCKET_OPEN = 1;
