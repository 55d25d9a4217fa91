// Node-only helpers for the files a process keeps in its state folder (identity keys, the
// signaling server's data): where the folder is, and a lock file that keeps a second live process
// off a file the first one owns. Not exported from protocol/index.ts: pages never load node:fs.
import { rmSync } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Where the CLI keeps its files: AIGRID_STATE_DIR, else $XDG_STATE_HOME/aigrid, else ~/.local/state/aigrid. */
export function defaultStateDir(): string {
  if (process.env.AIGRID_STATE_DIR) return process.env.AIGRID_STATE_DIR;
  return join(process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'aigrid');
}

const held = new Set<string>();

/**
 * Takes `${path}.lock` for this process (its pid inside; removed on exit). A lock left by a dead
 * process is taken over. Throws what `inUse(pid)` makes while another live process (or this one)
 * holds it.
 */
export async function lockFile(path: string, inUse: (pid: number | undefined) => Error): Promise<void> {
  const lockPath = `${path}.lock`;
  if (held.has(path)) throw inUse(process.pid);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(lockPath, 'wx', 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      held.add(path);
      process.once('exit', () => rmLockSync(lockPath));
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && alive(pid)) throw inUse(pid);
    await rm(lockPath, { force: true }); // left by a process that died
  }
  throw inUse(undefined);
}

export async function unlockFile(path: string): Promise<void> {
  held.delete(path);
  await rm(`${path}.lock`, { force: true });
}

/** Who holds a lock, in words. */
export function holderName(pid: number | undefined): string {
  return pid === process.pid ? 'this process' : pid ? `process ${pid}` : 'another process';
}

function rmLockSync(lockPath: string): void {
  try {
    rmSync(lockPath, { force: true });
  } catch {
    // exiting anyway
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
