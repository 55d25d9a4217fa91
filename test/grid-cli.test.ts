// `aigrid peer` processes serve what the coordinator assigns them: two CLI peers, each with room
// for half of tiny-llama, serve it together and a client generates the golden tokens.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemoteChain, signalingRoutes } from '../client/grid/index.ts';
import type { Mesh } from '../client/mesh/index.ts';
import type { ModelCoverage } from '../protocol/index.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';
import { idOf, writeKeyFile } from './helpers/identities.ts';

const BIN = fileURLToPath(new URL('../bin/aigrid.js', import.meta.url));
const NETWORK = 'cli-served';
let net: GridNet;
const children: ChildProcess[] = [];
let client: Mesh;
/** The peers' download cache, thrown away after the test. */
const cacheDir = mkdtempSync(join(tmpdir(), 'aigrid-cli-cache-'));

function cliPeer(name: string): Promise<void> {
  const id = idOf(name);
  const keyFile = writeKeyFile(join(cacheDir, `${name}.key`), name);
  const args = [BIN, 'peer', '--signal', net.server.wsUrl, '--network', NETWORK, '--identity', keyFile, '--memory-mb', '2', '--backend', 'cpu'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, AIGRID_CACHE_DIR: cacheDir } });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(`joined network ${NETWORK} as ${id}`)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`peer ${id} exited (${code}): ${out}`)));
  });
}

beforeAll(async () => {
  net = await startGridNet();
  await Promise.all([cliPeer('cli-one'), cliPeer('cli-two')]);
  client = await net.join(NETWORK, 'cli-client', 0); // a pure client offers no memory
});

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await net.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('aigrid peer serves assigned layers', () => {
  it('two CLI peers serve a model neither could hold alone', async () => {
    const spec = { ...(await net.spec('tiny-llama')), layerBytes: 1024 * 1024, replication: 1 };
    let coverage: ModelCoverage | undefined;
    client.signaling.on('models', (models) => (coverage = models.find((m) => m.model.modelId === spec.modelId)));
    client.signaling.send({ type: 'serve', model: spec });
    await waitFor(() => Boolean(coverage?.ready.every((r) => r >= 1)), 30_000, 'every layer ready');
    const chain = new RemoteChain({
      mesh: client,
      modelId: spec.modelId,
      numLayers: spec.numLayers,
      hiddenSize: spec.hiddenSize,
      routes: signalingRoutes(client.signaling, spec.modelId),
    });
    const g = (await net.model('tiny-llama')).golden[1]!;
    const result = await chain.generate(await net.head('tiny-llama'), g.ids, { maxTokens: g.greedy.length, temperature: 0 });
    expect(result.tokens).toEqual(g.greedy);
    chain.close();
  });
});
