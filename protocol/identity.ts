// Identities: every peer and client holds an Ed25519 key pair, and its peer id is derived from the
// public key, so no one can take a peer id without its private key. The signaling server proves
// possession with a challenge that `hello` signs. Signatures use WebCrypto, which Node and secure
// pages have natively (about 0.3 ms a signature here); @noble/curves signs and verifies where
// WebCrypto is missing (pages on plain-http origins other than localhost), 4 to 6 times slower.
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { z } from 'zod';

/** base64url of a raw Ed25519 public key (32 bytes). */
export const PublicKeySchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'publicKey: 43 base64url characters (32 bytes)');
/** base64url of an Ed25519 signature (64 bytes). */
export const SignatureSchema = z.string().regex(/^[A-Za-z0-9_-]{86}$/, 'signature: 86 base64url characters (64 bytes)');
/** base64url of the server's challenge to a connection (32 random bytes). */
export const NonceSchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/);

/** Characters of a peer id: base64url of the first 96 bits of SHA-256(public key). */
const PEER_ID_CHARS = 16;

/** Who a peer or client is: its id, its public key, and the power to sign as it. */
export interface Identity {
  readonly peerId: string;
  /** base64url raw public key. */
  readonly publicKey: string;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

export function toBase64Url(bytes: Uint8Array): string {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromBase64Url(text: string): Uint8Array<ArrayBuffer> {
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** The peer id that belongs to a public key (raw bytes or base64url). */
export function peerIdOf(publicKey: Uint8Array | string): string {
  const raw = typeof publicKey === 'string' ? fromBase64Url(publicKey) : publicKey;
  return toBase64Url(sha256(raw)).slice(0, PEER_ID_CHARS);
}

function subtle(): SubtleCrypto | undefined {
  return (globalThis.crypto as Crypto | undefined)?.subtle;
}

/** PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410), the form WebCrypto imports private keys in. */
const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

interface NodeCrypto {
  createPrivateKey(options: { key: Uint8Array; format: 'der'; type: 'pkcs8' }): unknown;
  sign(algorithm: null, data: Uint8Array, key: unknown): Uint8Array;
}

/**
 * In Node, OpenSSL signs synchronously in about 60 us; WebCrypto's sign costs as little CPU but
 * answers about 0.3 ms later (a thread hop), and a hop signs a leaf before every frame it sends.
 * Reached through process.getBuiltinModule, so pages' bundles import nothing of Node.
 */
function nodeSigner(pkcs8: Uint8Array): ((message: Uint8Array) => Uint8Array) | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const crypto = proc?.getBuiltinModule?.('node:crypto') as NodeCrypto | undefined;
  if (!crypto) return undefined;
  const key = crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  return (message) => new Uint8Array(crypto.sign(null, message, key));
}

/** An identity from a 32-byte seed (a key file's secret). */
export function identityFromSeed(seed: Uint8Array): Identity {
  if (seed.byteLength !== 32) throw new TypeError(`an Ed25519 seed is 32 bytes, got ${seed.byteLength}`);
  const secret = Uint8Array.from(seed);
  const publicKey = ed25519.getPublicKey(secret);
  let imported: Promise<CryptoKey> | undefined;
  const webCrypto = subtle();
  const pkcs8 = new Uint8Array(48);
  pkcs8.set(PKCS8_PREFIX);
  pkcs8.set(secret, 16);
  const node = nodeSigner(pkcs8);
  return {
    peerId: peerIdOf(publicKey),
    publicKey: toBase64Url(publicKey),
    async sign(message) {
      if (node) return node(message);
      if (!webCrypto) return ed25519.sign(message, secret);
      imported ??= webCrypto.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign']);
      return new Uint8Array(await webCrypto.sign({ name: 'Ed25519' }, await imported, toBuffer(message)));
    },
  };
}

/** A fresh identity that lives as long as the process or page (no storage). */
export function ephemeralIdentity(): Identity {
  return identityFromSeed(crypto.getRandomValues(new Uint8Array(32)));
}

/** An identity from a WebCrypto key pair; the private key may be non-extractable. */
export async function identityFromKeyPair(pair: CryptoKeyPair): Promise<Identity> {
  const webCrypto = subtle()!;
  const publicKey = new Uint8Array(await webCrypto.exportKey('raw', pair.publicKey));
  return {
    peerId: peerIdOf(publicKey),
    publicKey: toBase64Url(publicKey),
    async sign(message) {
      return new Uint8Array(await webCrypto.sign({ name: 'Ed25519' }, pair.privateKey, toBuffer(message)));
    },
  };
}

/** A new WebCrypto key pair whose private half cannot be read out, only used (for IndexedDB). */
export async function newKeyPair(): Promise<CryptoKeyPair> {
  return (await subtle()!.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
}

const verifyKeys = new Map<string, Promise<CryptoKey>>();
const VERIFY_KEYS_KEPT = 256;

/** Whether `signature` (base64url or raw) is `publicKey`'s signature of `message`. Never throws. */
export async function verifySignature(publicKey: string, message: Uint8Array, signature: string | Uint8Array): Promise<boolean> {
  try {
    const sig = typeof signature === 'string' ? fromBase64Url(signature) : toBuffer(signature);
    const raw = fromBase64Url(publicKey);
    if (sig.byteLength !== 64 || raw.byteLength !== 32) return false;
    const webCrypto = subtle();
    if (!webCrypto) return ed25519.verify(sig, message, raw);
    let key = verifyKeys.get(publicKey);
    if (!key) {
      key = webCrypto.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
      verifyKeys.set(publicKey, key);
      if (verifyKeys.size > VERIFY_KEYS_KEPT) verifyKeys.delete(verifyKeys.keys().next().value!);
    }
    return await webCrypto.verify({ name: 'Ed25519' }, await key, sig, toBuffer(message));
  } catch {
    return false;
  }
}

/** What `hello` signs: the connection's challenge, and the network and id it joins as. */
export function helloPayload(nonce: string, network: string, peerId: string): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(['aigrid-hello-1', nonce, network, peerId]));
}

function toBuffer(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : Uint8Array.from(bytes);
}
