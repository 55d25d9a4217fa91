// Identities: peer ids derived from Ed25519 keys, signatures through WebCrypto and through
// @noble/curves where WebCrypto is missing (the same bytes: Ed25519 is deterministic), and the
// key files of Node processes (mode 0600, kept across restarts, one live process per file).
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ed25519 } from '@noble/curves/ed25519.js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadIdentityFile } from '../client/mesh/identity-file.ts';
import {
  AigridError,
  ephemeralIdentity,
  fromBase64Url,
  identityFromKeyPair,
  identityFromSeed,
  newKeyPair,
  peerIdOf,
  PeerIdSchema,
  verifySignature,
} from '../protocol/index.ts';
import { startSignalingServer } from '../signaling/server.ts';

const BIN = fileURLToPath(new URL('../bin/aigrid.js', import.meta.url));
const MESSAGE = new TextEncoder().encode('layers 0-4 of tiny-llama');
const seed = (n: number) => Uint8Array.from({ length: 32 }, (_, i) => (i * 7 + n) & 255);
const tmp = () => mkdtempSync(join(tmpdir(), 'aigrid-identity-'));

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    return (err as AigridError).code;
  }
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('identities', () => {
  it('derive a valid peer id from the public key, the same for the same key', () => {
    const a = identityFromSeed(seed(1));
    expect(a.peerId).toBe(identityFromSeed(seed(1)).peerId);
    expect(a.peerId).not.toBe(identityFromSeed(seed(2)).peerId);
    expect(a.peerId).toBe(peerIdOf(a.publicKey));
    expect(PeerIdSchema.safeParse(a.peerId).success).toBe(true);
    expect(a.peerId).toHaveLength(16);
    expect(ephemeralIdentity().peerId).not.toBe(ephemeralIdentity().peerId);
  });

  it('sign through WebCrypto exactly as RFC 8032 (the @noble/curves bytes), and verify', async () => {
    const a = identityFromSeed(seed(3));
    const signature = await a.sign(MESSAGE);
    expect(signature).toEqual(ed25519.sign(MESSAGE, seed(3)));
    expect(await verifySignature(a.publicKey, MESSAGE, signature)).toBe(true);
    const tampered = Uint8Array.from(MESSAGE);
    tampered[0]! ^= 1;
    expect(await verifySignature(a.publicKey, tampered, signature)).toBe(false);
    expect(await verifySignature(identityFromSeed(seed(4)).publicKey, MESSAGE, signature)).toBe(false);
    expect(await verifySignature(a.publicKey, MESSAGE, signature.subarray(0, 63))).toBe(false);
    expect(await verifySignature('not a key', MESSAGE, signature)).toBe(false);
  });

  it('sign and verify with @noble/curves where WebCrypto is missing, with the same bytes', async () => {
    const withWebCrypto = await identityFromSeed(seed(5)).sign(MESSAGE);
    const real = (await import('node:crypto')).webcrypto;
    vi.stubGlobal('crypto', { getRandomValues: (a: Uint8Array) => real.getRandomValues(a) });
    expect(globalThis.crypto.subtle).toBeUndefined();
    const a = identityFromSeed(seed(5));
    const signature = await a.sign(MESSAGE);
    expect(signature).toEqual(withWebCrypto);
    expect(await verifySignature(a.publicKey, MESSAGE, signature)).toBe(true);
    expect(await verifySignature(a.publicKey, MESSAGE.subarray(1), signature)).toBe(false);
    expect(ephemeralIdentity().peerId).toHaveLength(16);
  });

  it('keep a non-extractable WebCrypto key usable (the form pages store in IndexedDB)', async () => {
    const pair = await newKeyPair();
    await expect(crypto.subtle.exportKey('pkcs8', pair.privateKey)).rejects.toThrow();
    const a = await identityFromKeyPair(pair);
    expect(await verifySignature(a.publicKey, MESSAGE, await a.sign(MESSAGE))).toBe(true);
    expect(a.peerId).toBe(peerIdOf(a.publicKey));
  });
});

describe('key files', () => {
  it('are created with mode 0600 and give the same identity when loaded again', async () => {
    const path = join(tmp(), 'nested', 'peer.key');
    const first = await loadIdentityFile(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const file = JSON.parse(readFileSync(path, 'utf8')) as { kty: string; crv: string; d: string; x: string };
    expect(file).toMatchObject({ kty: 'OKP', crv: 'Ed25519', x: first.publicKey });
    expect(identityFromSeed(fromBase64Url(file.d)).peerId).toBe(first.peerId);
    // Held by this process now: a second user in it would fight the first at the server.
    expect(await codeOf(loadIdentityFile(path))).toBe('ERR_IDENTITY_IN_USE');
  });

  it('are tightened to 0600 when loosened, and refused when they are not key files', async () => {
    const dir = tmp();
    const path = join(dir, 'loose.key');
    writeFileSync(path, JSON.stringify({ kty: 'OKP', crv: 'Ed25519', d: Buffer.from(seed(6)).toString('base64url'), x: '' }));
    chmodSync(path, 0o644);
    expect((await loadIdentityFile(path)).peerId).toBe(identityFromSeed(seed(6)).peerId);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    for (const [name, text] of [['junk.key', 'not json'], ['rsa.key', JSON.stringify({ kty: 'RSA', d: 'x' })], ['short.key', JSON.stringify({ kty: 'OKP', crv: 'Ed25519', d: 'abc' })]]) {
      writeFileSync(join(dir, name!), text!);
      expect(await codeOf(loadIdentityFile(join(dir, name!)))).toBe('ERR_INVALID_ARGUMENT');
      // A refused file leaves no lock behind.
      expect(() => statSync(join(dir, `${name}.lock`))).toThrow();
    }
  });

  it('take over the lock a dead process left', async () => {
    const path = join(tmp(), 'stale.key');
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.once('exit', resolve));
    writeFileSync(`${path}.lock`, String(dead.pid));
    expect((await loadIdentityFile(path)).peerId).toHaveLength(16);
  });

  it('keep a Node peer\'s id across a restart, and refuse a second live process', async () => {
    const server = await startSignalingServer();
    const keyFile = join(tmp(), 'peer.key');
    const run = () => {
      const child = spawn(process.execPath, [BIN, 'peer', '--signal', server.wsUrl, '--network', 'keys', '--identity', keyFile, '--memory-mb', '0', '--backend', 'cpu'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      const joined = new Promise<string>((resolve, reject) => {
        child.stdout!.on('data', () => {
          const id = /joined network keys as (\S+)/.exec(out)?.[1];
          if (id) resolve(id);
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      return { child, joined, exited, output: () => out };
    };
    try {
      const first = run();
      const id = await first.joined;
      const second = run();
      second.joined.catch(() => {});
      expect(await second.exited).not.toBe(0);
      expect(second.output()).toContain('ERR_IDENTITY_IN_USE');
      first.child.kill('SIGKILL');
      await first.exited;
      const again = run();
      expect(await again.joined).toBe(id);
      again.child.kill('SIGTERM');
      await again.exited;
      // `aigrid id` names the same peer, to give as a network's owner.
      const printed = await new Promise<string>((resolve) => execFile(process.execPath, [BIN, 'id', '--identity', keyFile], (_err, stdout) => resolve(stdout)));
      expect(printed.split(/\s+/)[0]).toBe(id);
    } finally {
      await server.close();
    }
  });
});
