// The signaling server's data folder: what it writes comes back after a restart, a second server
// is kept off it, a damaged file stops the start with a named error and is left as it was, and a
// write interrupted at any point leaves the previous state whole.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DataDir, type StoredNetwork } from '../signaling/data-dir.ts';
import type { ModelSpec } from '../protocol/index.ts';

const SPEC: ModelSpec = { modelId: 'tiny', source: 'https://example.org/tiny', numLayers: 4, hiddenSize: 64, layerBytes: 1 << 20, weightDtype: 'f32', replication: 1 };
const NETWORKS: Record<string, StoredNetwork> = {
  net: { rules: { owner: 'owner-key-0001', servers: ['server-key-001'], sources: 'server' }, models: [{ spec: SPEC, owner: 'server-key-001', assignments: [['peer-aaaa', 0, 2], ['peer-bbbb', 2, 4]] }] },
};

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'aigrid-data-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('DataDir', () => {
  it('gives back the served models, rules, reputations and the same ticket key after a restart', async () => {
    const first = await DataDir.open(dir);
    expect(first.restored).toEqual({ networks: {}, reputation: {} });
    first.saveServing(() => NETWORKS);
    first.saveReputation(() => ({ 'peer-aaaa': { verified: 3, wrong: 1, timeouts: 0 } }));
    const key = first.serverKey.publicKey;
    await first.close();
    const second = await DataDir.open(dir);
    expect(second.restored).toEqual({ networks: NETWORKS, reputation: { 'peer-aaaa': { verified: 3, wrong: 1, timeouts: 0 } } });
    expect(second.serverKey.publicKey).toBe(key);
    await second.close();
    // The key file is its owner's alone.
    const { stat } = await import('node:fs/promises');
    expect((await stat(join(dir, 'server.key'))).mode & 0o077).toBe(0);
  });

  it('keeps a second server off a folder in use, and lets the next one in once it is closed', async () => {
    const first = await DataDir.open(dir);
    await expect(DataDir.open(dir)).rejects.toMatchObject({ code: 'ERR_DATA_IN_USE' });
    await first.close();
    const next = await DataDir.open(dir);
    await next.close();
  });

  it('refuses a damaged file by name and leaves it as it was', async () => {
    for (const damaged of ['{"version":1,"networks":', '{"version":1,"networks":{"net":{"models":[{"spec":{"modelId":"x"}}]}}}', '{"version":2,"networks":{}}']) {
      await writeFile(join(dir, 'serving.json'), damaged);
      const err = await DataDir.open(dir).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ERR_DATA_CORRUPT' });
      expect((err as Error).message).toContain('serving.json');
      expect(await readFile(join(dir, 'serving.json'), 'utf8')).toBe(damaged);
      // The refused start released the folder.
      await expect(DataDir.open(dir).catch((e: { code: string }) => e.code)).resolves.toBe('ERR_DATA_CORRUPT');
    }
  });

  it('writes each state whole: a temporary file renamed over the last, none left behind', async () => {
    const data = await DataDir.open(dir);
    data.saveServing(() => NETWORKS);
    await data.close();
    const before = await readFile(join(dir, 'serving.json'), 'utf8');
    // A crash in mid-write leaves a temporary file beside the intact state; the next start reads the state.
    await writeFile(join(dir, 'serving.json.999.tmp'), before.slice(0, 20));
    const again = await DataDir.open(dir);
    expect(again.restored.networks).toEqual(NETWORKS);
    // Many changes in a row end as the last one.
    for (let i = 0; i < 50; i++) again.saveServing(() => ({ net: { models: [{ ...NETWORKS.net!.models[0]!, assignments: [['peer-aaaa', 0, (i % 4) + 1]] }] } }));
    await again.close();
    const last = JSON.parse(await readFile(join(dir, 'serving.json'), 'utf8')) as { networks: Record<string, StoredNetwork> };
    expect(last.networks.net!.models[0]!.assignments).toEqual([['peer-aaaa', 0, 2]]);
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp') && !f.startsWith('serving.json.999'))).toEqual([]);
  });
});
