// The README's worked example (test/snippets/worked-example.mjs, shown there verbatim) run as a
// person runs it after `npm start`: the real `aigrid start` on a free port with a state folder of
// its own, then the snippet with node against the built package, as the owner of the start's
// networks through the key start names (owner.key). Its blocks, policy and vDAG are made (and a
// second run finds and updates them), the LLM node's streamed tokens are its text before the
// policy shouts it, the embedding is the reference BERT's vector of the shouted text, and the
// gateway's run over HTTP answers what the SDK's did (greedy). `--owner ID` names another owner.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { readIdentityFile } from '../client/mesh/identity-file.ts';
import { fixtures } from './fixtures/index.ts';
import { bertFixture } from './fixtures/onnx-bert.ts';
import { bertEncode, bertHiddenStates, meanPooledEmbedding, widen } from './fixtures/bert-reference.ts';
import { waitFor } from './helpers/wait.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin/aigrid.js');
const SNIPPET = join(ROOT, 'test/snippets/worked-example.mjs');
const run = promisify(execFile);
const stateDir = mkdtempSync(join(tmpdir(), 'aigrid-example-state-'));
const cacheDir = mkdtempSync(join(tmpdir(), 'aigrid-example-cache-'));
const env = { ...process.env, AIGRID_STATE_DIR: stateDir, AIGRID_CACHE_DIR: cacheDir };
let start: ChildProcess | undefined;

afterAll(async () => {
  if (start && start.exitCode === null) {
    start.kill('SIGINT');
    await new Promise((resolve) => start!.once('exit', resolve));
  }
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(cacheDir, { recursive: true, force: true });
});

describe("the README's worked example", () => {
  it('is in the README as the snippet file is', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme.includes(`\`\`\`js\n${readFileSync(SNIPPET, 'utf8')}\`\`\``), 'README.md shows test/snippets/worked-example.mjs whole, in a js block').toBe(true);
  });

  it('runs after aigrid start: blocks, a policy and a vDAG, from the SDK and over HTTP', async () => {
    await fixtures();
    start = spawn(process.execPath, [BIN, 'start', '--port', '0', '--backend', 'cpu'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let banner = '';
    start.stdout!.on('data', (d: Buffer) => (banner += d.toString()));
    start.stderr!.on('data', (d: Buffer) => (banner += d.toString()));
    await waitFor(() => /network owner .*\n/.test(banner), 60_000, 'the start banner').catch((err: Error) => {
      throw new Error(`${err.message}; output: ${banner}`);
    });
    const base = /OpenAI API\s+(http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(banner)![1]!;
    expect(banner).toContain(`embedding      ${base}/models/bert-embed`);

    // start names the key it keeps in its state folder as the owner, and holds it not.
    const keyPath = join(stateDir, 'owner.key');
    const ownerId = (await readIdentityFile(keyPath)).peerId;
    expect(banner).toContain(`network owner  ${ownerId}, network owner key: ${keyPath}`);

    const example = () => run(process.execPath, [SNIPPET], { cwd: ROOT, env: { ...env, AIGRID_URL: base }, timeout: 90_000 }).catch((err: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`${err.message}\nstdout: ${err.stdout}\nstderr: ${err.stderr}\nstart: ${banner}`);
    });
    const first = parse((await example()).stdout);
    const network = (await (await fetch(`${base}/api/networks/default`)).json()) as { owner: string };
    expect(network.owner).toBe(ownerId);

    // The LLM node's tokens streamed as they came; its output is that text, shouted by the policy.
    expect(first.streamed).toMatch(/[a-z]/);
    expect(first.sdk.story).toEqual({ text: first.streamed.toUpperCase() });
    // The embedding node's vector is the reference BERT's of that shouted text.
    const fixture = bertFixture();
    const { ids, typeIds } = bertEncode(fixture.vocab, first.sdk.story.text);
    const expected = meanPooledEmbedding(bertHiddenStates(fixture.config, widen(fixture.weights), ids, typeIds));
    const { embedding } = first.sdk.vector;
    expect(first.width).toBe(fixture.config.hidden);
    expect(embedding).toHaveLength(fixture.config.hidden);
    embedding.forEach((v, i) => expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-5));
    // Over HTTP the same run answers the same (greedy, one replica).
    expect(first.http).toEqual(first.sdk);

    // A second run finds what the first made, updates it and answers the same.
    const second = parse((await example()).stdout);
    expect(second).toEqual(first);
  }, 180_000);
});

describe('aigrid start --owner', () => {
  it('names another key as the networks\' owner and makes no owner key; refuses what is not a peer id', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aigrid-owner-state-'));
    const ownerEnv = { ...env, AIGRID_STATE_DIR: dir };
    try {
      await expect(run(process.execPath, [BIN, 'start', '--owner', 'not a peer id'], { cwd: ROOT, env: ownerEnv })).rejects.toMatchObject({ stderr: expect.stringMatching(/--owner must be a peer id/) });
      const other = spawn(process.execPath, [BIN, 'start', '--port', '0', '--no-peer', '--in-memory', '--owner', 'someone-else-1'], { cwd: ROOT, env: ownerEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      other.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      other.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await waitFor(() => /network owner .*\n/.test(out), 30_000, 'the start banner').catch((err: Error) => {
          throw new Error(`${err.message}; output: ${out}`);
        });
        expect(out).toContain('network owner  someone-else-1 (--owner)');
        const base = /OpenAI API\s+(http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(out)![1]!;
        const network = (await (await fetch(`${base}/api/networks/default`)).json()) as { owner: string };
        expect(network.owner).toBe('someone-else-1');
        expect(existsSync(join(dir, 'owner.key'))).toBe(false);
      } finally {
        other.kill('SIGINT');
        await new Promise((resolve) => other.once('exit', resolve));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

interface Outputs {
  story: { text: string };
  vector: { embedding: number[] };
}

function parse(stdout: string): { streamed: string; sdk: Outputs; width: number; http: Outputs } {
  const m = /^streamed: ([\s\S]*)\nsdk outputs: (.*)\nvector of (\d+) numbers\nhttp outputs: (.*)\n$/.exec(stdout);
  if (!m) throw new Error(`the example printed something else: ${stdout}`);
  return { streamed: m[1]!, sdk: JSON.parse(m[2]!) as Outputs, width: Number(m[3]), http: JSON.parse(m[4]!) as Outputs };
}
