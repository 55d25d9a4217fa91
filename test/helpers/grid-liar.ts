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
  toBase64Url,
  unwrapSigned,
  wrapSigned,
} from '../../protocol/index.ts';
import { mulberry32 } from './random.ts';

export type Lie = 'perturb' | 'zeros' | 'other-session';

/** Makes `mesh` lie in every hidden-state frame it sends from now on. */
export function lie(mesh: Mesh, how: Lie, signs: 'what-it-sends' | 'honest' = 'what-it-sends', when: 'always' | 'unless-replayed' = 'always'): void {
  const send = mesh.send.bind(mesh);
  /** Outputs already sent once (a replay of a session computes them again): told honestly. */
  const seen = new Set<string>();
  const random = mulberry32(7);
  /** The last rows sent per row count, with the session they belonged to. */
  const sent = new Map<number, { sessionId: string; values: Float32Array }>();
  mesh.send = async (peerId, type, bytes) => {
    const signed = type === ServingFrame.signed ? unwrapSigned(bytes) : undefined;
    if (!signed || (signed.type !== ServingFrame.forward && signed.type !== ServingFrame.result)) return send(peerId, type, bytes);
    const { header, values } = decodeHidden(signed.payload);
    if (when === 'unless-replayed') {
      const key = toBase64Url(await contentRoot(signed.payload));
      if (seen.has(key)) return send(peerId, type, bytes);
      seen.add(key);
    }
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
    const { peerId: _p, publicKey: _k, signature: _s, input, output: _o, ...fields } = decodeControl(SignedLeafSchema, signed.leaf, 'leaf', MAX_LEAF_BYTES);
    const leaf = signs === 'honest' ? signed.leaf : encodeControl(await signLeaf(mesh.identity, fields, fromBase64Url(input), await contentRoot(frame)));
    return send(peerId, type, wrapSigned(signed.type, leaf, frame));
  };
}
