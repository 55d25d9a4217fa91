// A Node process's identity, kept in a key file (a JWK with the Ed25519 seed) readable by its
// owner only, so a peer restarted on the same machine keeps its id, its models and its history.
// A lock file beside it stops a second live process from using the same key: the two would
// take the identity from each other at the server.
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { AigridError, fromBase64Url, identityFromSeed, toBase64Url, type Identity } from '../../protocol/index.ts';
import { defaultStateDir, holderName, lockFile, unlockFile } from '../../protocol/state-files.ts';

export { defaultStateDir };

/** The key file a CLI command uses when not given --identity. */
export function defaultIdentityFile(role: string): string {
  return join(defaultStateDir(), `${role}.key`);
}

interface KeyFile {
  kty: 'OKP';
  crv: 'Ed25519';
  /** base64url seed. */
  d: string;
  /** base64url public key (for people reading the file; derived again on load). */
  x: string;
}

/**
 * Loads the identity in `path`, creating the file (mode 0600, its folder 0700) when it does not
 * exist. Throws ERR_IDENTITY_IN_USE while another live process (or this one) holds it, and
 * ERR_INVALID_ARGUMENT for a file that is not a key file.
 */
export async function loadIdentityFile(path: string): Promise<Identity> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await lockFile(path, inUse(path));
  try {
    return identityFromSeed(await readOrCreateSeed(path));
  } catch (err) {
    await unlockFile(path);
    throw err;
  }
}

/**
 * The identity in `path` (made when missing) without taking it: for a process that names the key,
 * such as `aigrid start` naming its networks' owner, while another process connects with it.
 */
export async function readIdentityFile(path: string): Promise<Identity> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  return identityFromSeed(await readOrCreateSeed(path));
}

async function readOrCreateSeed(path: string): Promise<Uint8Array> {
  const seed = crypto.getRandomValues(new Uint8Array(32));
  const fresh: KeyFile = { kty: 'OKP', crv: 'Ed25519', d: toBase64Url(seed), x: identityFromSeed(seed).publicKey };
  try {
    await writeFile(path, `${JSON.stringify(fresh)}\n`, { flag: 'wx', mode: 0o600 });
    return seed;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  // Someone else's key must not be readable by others: tighten a file that was loosened.
  if (((await stat(path)).mode & 0o077) !== 0) await chmod(path, 0o600);
  let parsed: Partial<KeyFile>;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<KeyFile>;
  } catch (err) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `identity file ${path} is not JSON: ${(err as Error).message}`);
  }
  const stored = typeof parsed.d === 'string' && /^[A-Za-z0-9_-]{43}$/.test(parsed.d) ? fromBase64Url(parsed.d) : undefined;
  if (parsed.kty !== 'OKP' || parsed.crv !== 'Ed25519' || !stored) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `identity file ${path} is not an Ed25519 key file (kty OKP, crv Ed25519, d: 32-byte seed)`);
  }
  return stored;
}

function inUse(path: string): (pid: number | undefined) => AigridError {
  return (pid) => new AigridError('ERR_IDENTITY_IN_USE', `identity file ${path} is in use by ${holderName(pid)}; give each running peer its own (--identity FILE)`);
}
