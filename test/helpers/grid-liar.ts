// Peers that compute like honest ones but lie about the result: a real GridPeer whose outgoing
// hidden states (to the next hop or to the client) are perturbed slightly, zeroed, or swapped for
// the rows it computed for another session. It signs the leaf of what it really sends, as a liar
// must for its frames to be taken (`signs: 'honest'` keeps the leaf of the true output instead,
// which the next hop refuses). What the spot-checks must catch.
import type { Mesh } from '../../client/mesh/index.ts';
import {
  contentRoot,
  decodeControl,
  decodeHidden,
  encodeControl,
  encodeHidden,
  fromBase64Url,
  MAX_LEAF_BYTES,
  ServingFrame,
  signLeaf,
  SignedLeafSchema,
} from '../../protocol/index.ts';
import { mulberry32 } from './random.ts';

export type Lie = 'perturb' | 'zeros' | 'other-session';

/** Makes `mesh` lie in every hidden-state frame it sends from now on. */
export function lie(mesh: Mesh, how: Lie, signs: 'what-it-sends' | 'honest' = 'what-it-sends'): void {
  const send = mesh.send.bind(mesh);
  /** The leaf of the frame about to be sent, per receiver (a leaf always goes just before its frame). */
  const leaves = new Map<string, Uint8Array>();
  const random = mulberry32(7);
  /** The last rows sent per row count, with the session they belonged to. */
  const sent = new Map<number, { sessionId: string; values: Float32Array }>();
  mesh.send = async (peerId, type, payload) => {
    if (type === ServingFrame.leaf) return void leaves.set(peerId, payload);
    if (type !== ServingFrame.forward && type !== ServingFrame.result) return send(peerId, type, payload);
    const { header, values } = decodeHidden(payload);
    const lied = Float32Array.from(values);
    if (how === 'zeros') lied.fill(0);
    if (how === 'perturb') {
      // Noise of 5% of the rows' RMS: small next to the values, far above the tolerance.
      const rms = Math.sqrt(values.reduce((a, v) => a + v * v, 0) / values.length);
      for (let i = 0; i < lied.length; i++) lied[i] = values[i]! + 0.05 * rms * (random() * 2 - 1) * Math.sqrt(3);
    }
    if (how === 'other-session') {
      const other = sent.get(header.tokens);
      if (other && other.sessionId !== header.sessionId) lied.set(other.values);
      sent.set(header.tokens, { sessionId: header.sessionId, values });
    }
    const frame = encodeHidden(header, lied, header.tokens, header.hidden);
    const honest = leaves.get(peerId);
    leaves.delete(peerId);
    if (honest) {
      const { peerId: _p, publicKey: _k, signature: _s, input, output: _o, ...fields } = decodeControl(SignedLeafSchema, honest, 'leaf', MAX_LEAF_BYTES);
      const leaf = signs === 'honest' ? honest : encodeControl(await signLeaf(mesh.identity, fields, fromBase64Url(input), await contentRoot(frame)));
      void send(peerId, ServingFrame.leaf, leaf);
    }
    return send(peerId, type, frame);
  };
}
