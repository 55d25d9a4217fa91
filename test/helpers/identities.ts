// Test identities by name: the same name gives the same key pair in every process and run, so a
// test can say "peer-a" and still join with a real, signed identity (idOf gives its peer id).
import { writeFileSync } from 'node:fs';
import { sha256 } from '@noble/hashes/sha2.js';
import { identityFromSeed, toBase64Url, type Identity } from '../../protocol/index.ts';

const made = new Map<string, Identity>();

function seedOf(name: string): Uint8Array {
  return sha256(new TextEncoder().encode(`aigrid-test-identity:${name}`));
}

export function testIdentity(name: string): Identity {
  let identity = made.get(name);
  if (!identity) made.set(name, (identity = identityFromSeed(seedOf(name))));
  return identity;
}

/** The peer id of the test identity called `name`. */
export function idOf(name: string): string {
  return testIdentity(name).peerId;
}

/** Writes the test identity `name` as a key file (the form `aigrid peer --identity FILE` reads). */
export function writeKeyFile(path: string, name: string): string {
  writeFileSync(path, JSON.stringify({ kty: 'OKP', crv: 'Ed25519', d: toBase64Url(seedOf(name)), x: testIdentity(name).publicKey }), { mode: 0o600 });
  return path;
}
