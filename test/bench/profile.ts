// CPU profiles of a chosen stretch of a benchmark (AIGRID_BENCH_PROF=DIR), through Node's inspector,
// so that a profile shows the measured phase alone rather than a whole run with its loading.
import { Session } from 'node:inspector/promises';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

let session: Session | undefined;

export async function startProfile(): Promise<void> {
  if (session) return;
  session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
}

/** Stops the profile started last and writes it to `file` (open it in Chrome's DevTools). */
export async function stopProfile(file: string): Promise<void> {
  if (!session) return;
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  session = undefined;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(profile));
}
