// A misbehaving hop for failover tests: it accepts sessions like a real peer (links to the next
// hop, echoes the setup) but passes on garbage instead of hidden states, or nothing at all.
import type { Mesh } from '../../client/mesh/index.ts';
import { decodeActivation, encodeActivation, ServingFrame, unwrapSigned, type SessionSetup } from '../../protocol/index.ts';

export type Fault = 'nan' | 'shape' | 'malformed' | 'silent';

export function faultyHop(mesh: Mesh, fault: () => Fault): void {
  const sessions = new Map<string, SessionSetup>();
  mesh.on('frame', (from, frame) => {
    if (frame.type === ServingFrame.session) {
      const setup = JSON.parse(new TextDecoder().decode(frame.payload)) as SessionSetup;
      if (setup.client !== from) return;
      sessions.set(setup.sessionId, setup);
      const next = setup.hops[setup.hops.findIndex((h) => h.peerId === mesh.peerId) + 1];
      (next ? mesh.connect(next.peerId) : Promise.resolve()).then(() => mesh.send(from, ServingFrame.session, frame.payload)).catch(() => {});
      return;
    }
    // Inputs come signed by the hop before (or plain from the client, for hop 0).
    const input = frame.type === ServingFrame.signed ? unwrapSigned(frame.payload) : frame;
    if (input?.type !== ServingFrame.forward || fault() === 'silent') return;
    const { header } = decodeActivation(input.payload);
    const setup = sessions.get(header.sessionId);
    const index = setup?.hops.findIndex((h) => h.peerId === mesh.peerId) ?? -1;
    const next = setup?.hops[index + 1];
    if (!next) return;
    const T = header.tokens;
    const H = header.hidden;
    const onward = { ...header, hop: index + 1, layerStart: next.start, layerEnd: next.end };
    let payload: Uint8Array;
    switch (fault()) {
      case 'nan':
        payload = encodeActivation(onward, new Uint8Array(new Uint16Array(T * H).fill(0x7e00).buffer));
        break;
      case 'shape': // consistent bytes, but rows of half the model's width
        payload = encodeActivation({ ...onward, tokens: T * 2, hidden: H / 2 }, new Uint8Array(T * H * 2));
        break;
      default: // a header cut short after the session and request ids
        payload = encodeActivation(onward, new Uint8Array(T * H * 2)).subarray(0, 20);
    }
    mesh.send(next.peerId, ServingFrame.forward, payload).catch(() => {});
  });
}
