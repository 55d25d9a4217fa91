// A page's (or the extension's) identity, kept across reloads: a non-extractable WebCrypto key
// pair in the origin's IndexedDB. Tabs of one origin share that storage, and two tabs with one key
// would take the identity from each other at the server, so each tab holds a Web Lock on a slot
// and uses that slot's key: one tab gets slot 0 (the same key after every reload), a second tab
// open at the same time slot 1, and so on. Where a page cannot keep a key (no WebCrypto, as on a
// plain-http origin other than localhost, or no IndexedDB or Web Locks) the identity is ephemeral.
import { ephemeralIdentity, identityFromKeyPair, newKeyPair, type Identity } from '../../protocol/index.ts';

const DB_NAME = 'aigrid-identity';
const STORE = 'keys';
/** Tabs of one origin that keep their own identity at once; more get ephemeral ones. */
const SLOTS = 16;

const loaded = new Map<string, Promise<Identity>>();

/**
 * The identity for `role` ('client', 'peer') in this tab, kept across reloads where possible; the
 * same one for every call in the tab.
 */
export function browserIdentity(role: string): Promise<Identity> {
  let identity = loaded.get(role);
  if (!identity) loaded.set(role, (identity = loadIdentity(role)));
  return identity;
}

async function loadIdentity(role: string): Promise<Identity> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (!globalThis.crypto?.subtle || !globalThis.indexedDB || !locks) return ephemeralIdentity();
  try {
    const slot = await holdSlot(locks, role);
    if (slot === undefined) return ephemeralIdentity();
    return await identityFromKeyPair(await storedKeyPair(`${role}/${slot}`));
  } catch {
    return ephemeralIdentity(); // storage refused (private mode, quota): still a working peer
  }
}

/** Takes the first free slot's lock and holds it until the page goes away. */
async function holdSlot(locks: LockManager, role: string): Promise<number | undefined> {
  for (let slot = 0; slot < SLOTS; slot++) {
    const granted = await new Promise<boolean>((resolve) => {
      void locks.request(`aigrid-identity/${role}/${slot}`, { ifAvailable: true }, (lock) => {
        resolve(lock !== null);
        return lock ? new Promise<void>(() => {}) : undefined;
      });
    });
    if (granted) return slot;
  }
  return undefined;
}

async function storedKeyPair(name: string): Promise<CryptoKeyPair> {
  const db = await openDb();
  try {
    const found = await request<CryptoKeyPair | undefined>(db.transaction(STORE).objectStore(STORE).get(name));
    if (found?.privateKey && found.publicKey) return found;
    const pair = await newKeyPair();
    await request(db.transaction(STORE, 'readwrite').objectStore(STORE).put(pair, name));
    return pair;
  } finally {
    db.close();
  }
}

function openDb(): Promise<IDBDatabase> {
  const open = indexedDB.open(DB_NAME, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE);
  return request(open);
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}
