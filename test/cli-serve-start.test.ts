// The commands a new user runs: `aigrid serve FOLDER` makes a local model available on a network
// (its files served from that process) with a progress bar and a tokens/s line; `aigrid start`
// (npm start) runs server, web app, gateway and a peer with the offline default model, and a chat
// through its gateway answers at once.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '../client/sdk/node.ts';
import { startSignalingServer } from '../signaling/server.ts';
import { FIXTURE_DIR, fixtures } from './fixtures/index.ts';
import { waitFor } from './helpers/wait.ts';

const BIN = fileURLToPath(new URL('../bin/aigrid.js', import.meta.url));
const children: ChildProcess[] = [];
const cacheDir = mkdtempSync(join(tmpdir(), 'aigrid-serve-cache-'));

/** Runs `aigrid ...args`, collecting its output. */
function aigrid(args: string[]): { child: ChildProcess; output: () => string } {
  // Each process keeps its key files in a folder of its own, as separate machines would.
  const stateDir = mkdtempSync(join(tmpdir(), 'aigrid-state-'));
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AIGRID_CACHE_DIR: cacheDir, AIGRID_STATE_DIR: stateDir } });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('aigrid serve', () => {
  it('serves a local folder to the network and shows load progress and tokens/s', async () => {
    await fixtures();
    const server = await startSignalingServer({});
    const serve = aigrid(['serve', join(FIXTURE_DIR, 'tiny-llama'), '--signal', server.wsUrl, '--network', 'served', '--memory-mb', '64', '--replication', '1', '--backend', 'cpu']);
    const grid = await connect({ signal: server.wsUrl, network: 'served' });
    try {
      await waitFor(async () => (await grid.models.list()).data[0]?.health === 'ready', 30_000, 'tiny-llama ready').catch((err: Error) => {
        throw new Error(`${err.message}; output: ${serve.output()}`);
      });
      const model = (await fixtures()).models.find((m) => m.name === 'tiny-llama')!;
      const g = model.golden[0]!;
      const out = await grid.generate({ model: 'tiny-llama', prompt: g.ids, maxTokens: g.greedy.length, temperature: 0, stopTokens: [] });
      expect(out.tokens).toEqual(g.greedy);
      expect(serve.output()).toMatch(/serving tiny-llama on network served/);
      expect(serve.output()).toMatch(/loading tiny-llama \[0, 4\) \[#+\] 100%/);
      await waitFor(() => /tok\/s · \d+ sessions · [1-9]\d* tokens served/.test(serve.output()), 15_000, 'a tokens/s line counting the tokens served');
    } finally {
      grid.close();
      serve.child.kill('SIGINT');
      await server.close();
    }
  });
});

describe('aigrid start', () => {
  it('runs server, web app, gateway and a peer serving the offline default model', async () => {
    await fixtures();
    const start = aigrid(['start', '--port', '0', '--backend', 'cpu']);
    await waitFor(() => /OpenAI API\s+http:\/\/127\.0\.0\.1:\d+\/v1/.test(start.output()), 60_000, 'the start banner').catch((err: Error) => {
      throw new Error(`${err.message}; output: ${start.output()}`);
    });
    const base = /OpenAI API\s+(http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(start.output())![1]!;
    expect(start.output()).toMatch(/random weights/i);
    expect((await fetch(`${base}/`)).status).toBe(200);

    await waitFor(async () => {
      const list = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string; health: string }[] };
      return list.data.some((m) => m.id === 'tiny-smollm2-random' && m.health !== 'loading' && m.health !== 'unavailable');
    }, 30_000, 'the default model ready');
    const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string; spec: { notice?: string } }[] };
    expect(models.data[0]!.spec.notice).toMatch(/random weights/i);

    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-smollm2-random', messages: [{ role: 'user', content: 'hello' }], max_tokens: 8, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    const reply = (await res.json()) as { choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
    expect(reply.usage.completion_tokens).toBeGreaterThan(0);
    expect(reply.choices[0]!.message.content.length).toBeGreaterThan(0);
    start.child.kill('SIGINT');
    await new Promise((resolve) => start.child.once('exit', resolve));
  });
});
