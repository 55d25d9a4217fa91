// The signaling server's data folder (`aigrid signal --data DIR`): what must outlive a restart.
// serving.json holds each network's rules, blocks, vDAGs, policies and served models with their placements (not the
// peers' readiness, which they report again); reputation.json each key's record; credits.json each
// network's credit ledger (written apart: it changes with every settlement); server.key the
// key that signs route tickets, so tickets and the key peers learned stay valid. Every write goes
// to a temporary file that is synced and renamed over the old one, so a crash leaves the previous
// state or the new one, never a mix. A lock file keeps a second server off the same folder.
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { AigridError, CreditRulesSchema, BlockSchema, PolicyRecordSchema, VdagSchema, fromBase64Url, identityFromSeed, ModelSpecSchema, PeerIdSchema, ServersSchema, SourcesSchema, toBase64Url, type Identity } from '../protocol/index.ts';
import { holderName, lockFile, unlockFile } from '../protocol/state-files.ts';
import { CreditsFileSchema, type StoredCredits } from './ledger.ts';

const StoredModelSchema = z.object({
  spec: ModelSpecSchema,
  owner: PeerIdSchema,
  /** [peerId, start, end] of each assigned range. */
  assignments: z.array(z.tuple([PeerIdSchema, z.number().int().min(0), z.number().int().min(1)])),
});

const StoredNetworkSchema = z.object({
  rules: z.object({ owner: PeerIdSchema, servers: ServersSchema, sources: SourcesSchema, credits: CreditRulesSchema.optional() }).optional(),
  models: z.array(StoredModelSchema),
  blocks: z.array(BlockSchema).optional(),
  vdags: z.array(VdagSchema).optional(),
  policies: z.array(PolicyRecordSchema).optional(),
});

const ServingFileSchema = z.object({ version: z.literal(1), networks: z.record(z.string(), StoredNetworkSchema) });

const ReputationFileSchema = z.object({
  version: z.literal(1),
  keys: z.record(z.string(), z.object({ verified: z.number().int().min(0), wrong: z.number().int().min(0), timeouts: z.number().int().min(0) })),
});

export type StoredModel = z.infer<typeof StoredModelSchema>;
export type StoredNetwork = z.infer<typeof StoredNetworkSchema>;
export type StoredReputation = z.infer<typeof ReputationFileSchema>['keys'];

export interface StoredState {
  networks: Record<string, StoredNetwork>;
  reputation: StoredReputation;
  /** Each network's credit ledger (credits.json), when the folder has one. */
  credits?: StoredCredits;
}

/** Files written at most this often: reputation changes with every verdict, credits with every settlement. */
const THROTTLED: Record<string, number> = { 'reputation.json': 5_000, 'credits.json': 1_000 };

export class DataDir {
  /** The text last written to each file, so an unchanged state is not written again. */
  private readonly written = new Map<string, string>();
  /** Per file: the write in progress, and whether another must follow it. */
  private readonly writing = new Map<string, Promise<void>>();
  private readonly pending = new Map<string, () => string>();
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private closed = false;

  private constructor(
    readonly dir: string,
    readonly serverKey: Identity,
    readonly restored: StoredState,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Opens (creating) the folder and reads what it holds. Throws ERR_DATA_IN_USE while another
   * live server holds it, and ERR_DATA_CORRUPT for a file it cannot read back (left as it is).
   */
  static async open(dir: string, log: (line: string) => void = () => {}): Promise<DataDir> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const lockPath = join(dir, 'serving.json');
    await lockFile(lockPath, (pid) => new AigridError('ERR_DATA_IN_USE', `data folder ${dir} is in use by ${holderName(pid)}; give each signaling server its own (--data DIR)`));
    try {
      const serverKey = await readOrCreateKey(join(dir, 'server.key'));
      const serving = await readJson(join(dir, 'serving.json'), ServingFileSchema);
      const reputation = await readJson(join(dir, 'reputation.json'), ReputationFileSchema);
      const credits = await readJson(join(dir, 'credits.json'), CreditsFileSchema);
      return new DataDir(dir, serverKey, { networks: serving?.networks ?? {}, reputation: reputation?.keys ?? {}, ...(credits ? { credits: credits.networks } : {}) }, log);
    } catch (err) {
      await unlockFile(lockPath);
      throw err;
    }
  }

  /** The served models and rules changed: written now (after any write in progress). */
  saveServing(networks: () => Record<string, StoredNetwork>): void {
    this.save('serving.json', () => JSON.stringify({ version: 1, networks: networks() }));
  }

  /** Records changed: written within 5 s. */
  saveReputation(keys: () => StoredReputation): void {
    this.saveSoon('reputation.json', () => JSON.stringify({ version: 1, keys: keys() }));
  }

  /** A ledger changed: written within 1 s (and on close), the ledgers as one consistent snapshot. */
  saveCredits(networks: () => StoredCredits): void {
    this.saveSoon('credits.json', () => JSON.stringify({ version: 1, networks: networks() }));
  }

  private saveSoon(file: string, text: () => string): void {
    this.pending.set(file, text);
    this.schedule(file);
  }

  /** Writes a throttled file's pending state when its interval has passed. */
  private schedule(file: string): void {
    if (this.timers.has(file) || this.closed) return;
    const timer = setTimeout(() => {
      this.timers.delete(file);
      this.kick(file);
    }, THROTTLED[file]);
    timer.unref();
    this.timers.set(file, timer);
  }

  /** Writes what is pending and releases the folder. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    // A write in progress starts the next of its file when it ends: wait until none is left.
    while (this.pending.size || this.writing.size) {
      for (const file of [...this.pending.keys()]) this.kick(file);
      await Promise.all([...this.writing.values()]);
    }
    await unlockFile(join(this.dir, 'serving.json'));
  }

  private save(file: string, text: () => string): void {
    if (this.closed) return;
    this.pending.set(file, text);
    this.kick(file);
  }

  /** Starts a write of the file's pending state unless one is running (which starts the next). */
  private kick(file: string): void {
    if (this.writing.has(file)) return;
    const next = this.pending.get(file);
    if (!next) return;
    this.pending.delete(file);
    const run = (async () => {
      const text = next();
      if (this.written.get(file) === text) return;
      await atomicWrite(join(this.dir, file), text);
      this.written.set(file, text);
    })()
      .catch((err: unknown) => this.log(`data folder ${this.dir}: could not write ${file}: ${(err as Error).message}`))
      .finally(() => {
        this.writing.delete(file);
        if (!this.pending.has(file)) return;
        // A throttled file changed while it was written: its next write waits out the interval.
        if (THROTTLED[file] === undefined || this.closed) this.kick(file);
        else this.schedule(file);
      });
    this.writing.set(file, run);
  }
}

/** Writes a file so that a crash leaves either its old or its new content. */
async function atomicWrite(path: string, text: string): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  const handle = await open(temporary, 'w', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
}

async function readJson<T>(path: string, schema: z.ZodType<T>): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw corrupt(path, `not JSON (${(err as Error).message})`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw corrupt(path, parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  return parsed.data;
}

function corrupt(path: string, why: string): AigridError {
  return new AigridError('ERR_DATA_CORRUPT', `${path} cannot be read back: ${why.slice(0, 300)}. It is left untouched; move it away to start without it`);
}

async function readOrCreateKey(path: string): Promise<Identity> {
  const seed = crypto.getRandomValues(new Uint8Array(32));
  try {
    await writeFile(path, `${JSON.stringify({ seed: toBase64Url(seed) })}\n`, { flag: 'wx', mode: 0o600 });
    return identityFromSeed(seed);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const stored = await readJson(path, z.object({ seed: z.string().regex(/^[A-Za-z0-9_-]{43}$/) }));
  return identityFromSeed(fromBase64Url(stored!.seed));
}
