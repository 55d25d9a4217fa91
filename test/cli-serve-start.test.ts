// The commands a new user runs: `aigrid serve FOLDER` makes a local model available on a network
// (its files served from that process) with a progress bar and a tokens/s line, as does `aigrid
// serve FILE.gguf` after printing its plan; `aigrid start`
// (npm start) runs server, web app, gateway and a peer with the offline default model, and a chat
// through its gateway answers at once.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { openModelNode } from '../client/model/checkpoint/node.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import { connect } from '../client/sdk/node.ts';
import { startSignalingServer } from '../signaling/server.ts';
import { FIXTURE_DIR, fixtures } from './fixtures/index.ts';
import { ggufFixture } from './helpers/gguf-fixtures.ts';
import { greedyRun } from './helpers/model-runtime.ts';
import { waitFor } from './helpers/wait.ts';

const BIN = fileURLToPath(new URL('../bin/aigrid.js', import.meta.url));
const children: ChildProcess[] = [];
const cacheDir = mkdtempSync(join(tmpdir(), 'aigrid-serve-cache-'));

/** Runs `aigrid ...args`, collecting its output. */
function aigrid(args: string[], stateDir = mkdtempSync(join(tmpdir(), 'aigrid-state-'))): { child: ChildProcess; output: () => string; stateDir: string } {
  // Each process keeps its key files in a folder of its own, as separate machines would.
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AIGRID_CACHE_DIR: cacheDir, AIGRID_STATE_DIR: stateDir } });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out, stateDir };
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
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

describe('aigrid serve FILE.gguf', () => {
  it('prints the plan first, serves the file alone and gives the tokens one process computes from it', async () => {
    const path = await ggufFixture('tiny-llama', 'Q8_0');
    const server = await startSignalingServer({});
    const serve = aigrid(['serve', path, '--signal', server.wsUrl, '--network', 'gguf', '--memory-mb', '64', '--replication', '1', '--backend', 'cpu', '--model-id', 'tl-q8']);
    const grid = await connect({ signal: server.wsUrl, network: 'gguf' });
    try {
      await waitFor(async () => (await grid.models.list()).data[0]?.health === 'ready', 30_000, 'the GGUF model ready').catch((err: Error) => {
        throw new Error(`${err.message}; output: ${serve.output()}`);
      });
      const reader = await openModelNode(path);
      const head = await Head.load(reader, { backend: 'cpu' });
      const shard = await Shard.load(reader, { start: 0, end: 4, backend: 'cpu' });
      const g = (await fixtures()).models.find((m) => m.name === 'tiny-llama')!.golden[0]!;
      const alone = await greedyRun(head, [shard], g.ids, g.greedy.length, 'alone');
      head.destroy();
      shard.destroy();
      const out = await grid.generate({ model: 'tl-q8', prompt: g.ids, maxTokens: g.greedy.length, temperature: 0, stopTokens: [] });
      expect(out.tokens).toEqual(alone.tokens);
      const output = serve.output();
      expect(output).toMatch(/plan: tl-q8: 4 layers of [\d.]+ MB \(weights and a KV share\) \+ head [\d.]+ MB = [\d.]+ MB; 1 peer of 64 MB hold it \(4 layers each, replication 1\)/);
      expect(output.indexOf('plan:')).toBeLessThan(output.indexOf('loading'));
      expect(output).toMatch(/files at http:\/\/127\.0\.0\.1:\d+\/models\/tl-q8/);
    } finally {
      grid.close();
      serve.child.kill('SIGINT');
      await server.close();
    }
  });
});

describe('aigrid start', () => {
  /** Waits for the banner and the default model, then asks it for a reply; returns the server's base URL. */
  async function chats(start: ReturnType<typeof aigrid>): Promise<string> {
    await waitFor(() => /OpenAI API\s+http:\/\/127\.0\.0\.1:\d+\/v1/.test(start.output()), 60_000, 'the start banner').catch((err: Error) => {
      throw new Error(`${err.message}; output: ${start.output()}`);
    });
    const base = /OpenAI API\s+(http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(start.output())![1]!;
    await waitFor(async () => {
      const list = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string; health: string }[] };
      return list.data.some((m) => m.id === 'tiny-smollm2-random' && m.health !== 'loading' && m.health !== 'unavailable');
    }, 30_000, 'the default model ready').catch((err: Error) => {
      throw new Error(`${err.message}; output: ${start.output()}`);
    });
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-smollm2-random', messages: [{ role: 'user', content: 'hello' }], max_tokens: 8, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    const reply = (await res.json()) as { choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
    expect(reply.usage.completion_tokens).toBeGreaterThan(0);
    expect(reply.choices[0]!.message.content.length).toBeGreaterThan(0);
    return base;
  }

  it('runs server, web app, gateway and a peer serving the offline default model; started again on its state (same port or another), it serves again', async () => {
    await fixtures();
    // One port for both starts: the offline model's files are served by the process itself.
    const port = String(await freePort());
    const start = aigrid(['start', '--port', port, '--backend', 'cpu']);
    const base = await chats(start);
    expect(start.output()).toMatch(/random weights/i);
    expect((await fetch(`${base}/`)).status).toBe(200);
    const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string; spec: { notice?: string } }[] };
    expect(models.data[0]!.spec.notice).toMatch(/random weights/i);
    start.child.kill('SIGINT');
    await new Promise((resolve) => start.child.once('exit', resolve));

    // The second start finds the model and the peer's range in its state: the server tells the
    // peer its range as it joins, before the peer's serving side listens, and it must still load it.
    const again = aigrid(['start', '--port', port, '--backend', 'cpu'], start.stateDir);
    await chats(again);
    again.child.kill('SIGINT');
    await new Promise((resolve) => again.child.once('exit', resolve));

    // On another port the remembered spec's files are gone: the peer fails to load it, and the
    // spec served anew (at the new port) is placed on it all the same.
    const moved = aigrid(['start', '--port', String(await freePort()), '--backend', 'cpu'], start.stateDir);
    await chats(moved);
    moved.child.kill('SIGINT');
    await new Promise((resolve) => moved.child.once('exit', resolve));
  });
});
