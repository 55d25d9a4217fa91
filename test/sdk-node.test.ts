// The SDK in Node against a grid of Node peers that follow the coordinator: serve a model through
// the SDK, list it with its coverage, and get OpenAI-shaped replies whose tokens are the goldens
// (greedy) whole, streamed, with stop strings and usage; aborting stops the work on every peer;
// bad requests get named errors.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GridPeer } from '../client/grid/index.ts';
import { AigridError, connect, type ChatCompletionChunk, type CompletionChunk, type Grid } from '../client/sdk/node.ts';
import { Tokenizer } from '../client/model/tokenizer.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { failure, openFixture } from './helpers/model-runtime.ts';
import { waitFor } from './helpers/wait.ts';

const NETWORK = 'sdk';
const run = promisify(execFile);
let net: GridNet;
let grid: Grid;
const peers: GridPeer[] = [];
let tokenizer: Tokenizer;

beforeAll(async () => {
  net = await startGridNet();
  for (const id of ['sdk-peer-a', 'sdk-peer-b']) peers.push(await net.peer(NETWORK, id));
  grid = await connect({ signal: net.server.wsUrl, network: NETWORK });
  tokenizer = await Tokenizer.fromReader(await openFixture('tiny-llama'));
  await grid.serve({ source: `${net.files.url}/tiny-llama`, modelId: 'tiny-llama', replication: 2 });
  await waitFor(async () => (await grid.models.list()).data[0]?.health === 'ready', 30_000, 'tiny-llama ready on both peers');
});

afterAll(async () => {
  grid?.close();
  await net?.close();
});

describe('SDK in Node', () => {
  it('lists the served model with its coverage and health', async () => {
    const list = await grid.models.list();
    expect(list.object).toBe('list');
    expect(list.data).toHaveLength(1);
    const info = list.data[0]!;
    expect(info).toMatchObject({ id: 'tiny-llama', object: 'model', owned_by: 'aigrid', health: 'ready', light: false });
    expect(info.coverage.layers).toBe(4);
    expect(info.coverage.ready).toEqual([2, 2, 2, 2]);
    expect(info.spec.layerBytes).toBeGreaterThan(1000);
  });

  it('generates the golden tokens (token ids in and out)', async () => {
    const model = await net.model('tiny-llama');
    for (const g of model.golden.slice(0, 2)) {
      const out = await grid.generate({ model: 'tiny-llama', prompt: g.ids, maxTokens: g.greedy.length, temperature: 0, stopTokens: [] });
      expect(out.tokens).toEqual(g.greedy);
      expect(out.finishReason).toBe('length');
      expect(out.aigrid.route.length).toBeGreaterThan(0);
      expect(out.aigrid.route[0]!.start).toBe(0);
      expect(out.aigrid.route.at(-1)!.end).toBe(4);
    }
  });

  it('answers text completions whole and streamed with the same greedy text, and counts usage', async () => {
    const g = (await net.model('tiny-llama')).golden[1]!;
    const steps = 12;
    const expected = tokenizer.decode(untilEos(g.greedy.slice(0, steps)));
    const whole = await grid.completions.create({ model: 'tiny-llama', prompt: g.prompt, max_tokens: steps, temperature: 0 });
    expect(whole.object).toBe('text_completion');
    expect(whole.choices[0]!.text).toBe(expected);
    expect(whole.usage.prompt_tokens).toBe(g.ids.length);
    expect(whole.usage.total_tokens).toBe(whole.usage.prompt_tokens + whole.usage.completion_tokens);
    expect(whole.aigrid.tokensPerSecond).toBeGreaterThan(0);

    const chunks: CompletionChunk[] = [];
    const stream = await grid.completions.create({ model: 'tiny-llama', prompt: g.prompt, max_tokens: steps, temperature: 0, stream: true, stream_options: { include_usage: true } });
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.choices[0]?.text ?? '').join('')).toBe(expected);
    expect(chunks.filter((c) => c.choices.length > 0).length).toBeGreaterThan(2);
    const last = chunks.at(-2)!;
    expect(last.choices[0]!.finish_reason).toBe(whole.choices[0]!.finish_reason);
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toEqual(whole.usage);
  });

  it('streams chat completions as OpenAI chunks and ends the text before a stop string', async () => {
    const messages = [{ role: 'user', content: 'the quick brown fox' }];
    const whole = await grid.chat.completions.create({ model: 'tiny-llama', messages, max_tokens: 16, temperature: 0 });
    const text = whole.choices[0]!.message.content;
    expect(whole.object).toBe('chat.completion');
    expect(text.length).toBeGreaterThan(0);
    const ids = tokenizer.encodeChat(messages);
    const tokens = (await grid.generate({ model: 'tiny-llama', prompt: ids, maxTokens: 16, temperature: 0 })).tokens;
    expect(text).toBe(tokenizer.decode(tokens));

    const chunks: ChatCompletionChunk[] = [];
    for await (const c of await grid.chat.completions.create({ model: 'tiny-llama', messages, max_tokens: 16, temperature: 0, stream: true })) chunks.push(c);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(text);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.at(-1)!.aigrid?.route.length).toBeGreaterThan(0);

    // Stop at the third word: the text is everything before it.
    const words = text.trim().split(' ');
    const stop = ` ${words[2]}`;
    const cut = await grid.chat.completions.create({ model: 'tiny-llama', messages, max_tokens: 16, temperature: 0, stop: [stop] });
    expect(cut.choices[0]!.finish_reason).toBe('stop');
    expect(cut.choices[0]!.message.content).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('draws the same text for the same seed, and other text for others', async () => {
    // The fixture's logits are sharp (a spread of ~24), so a high temperature makes draws differ.
    const ask = (seed: number) => grid.completions.create({ model: 'tiny-llama', prompt: 'once upon a time', max_tokens: 24, temperature: 2, seed });
    const [a, b, ...others] = await Promise.all([ask(7), ask(7), ask(8), ask(9), ask(10)]);
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text);
    expect(new Set([a, ...others].map((r) => r.choices[0]!.text)).size).toBeGreaterThan(1);
  });

  it('stops the work on every peer when a stream is aborted', async () => {
    const served = () => peers.reduce((sum, p) => sum + p.status().reduce((s, x) => s + x.tokensServed, 0), 0);
    const controller = new AbortController();
    const stream = await grid.completions.create({ model: 'tiny-llama', prompt: 'once upon a time', max_tokens: 100, temperature: 0, stop: null, stream: true }, { signal: controller.signal });
    let chunks = 0;
    const consumed = (async () => {
      for await (const _ of stream) if (++chunks === 3) controller.abort();
    })();
    const err = await failure(consumed, 'ERR_ABORTED');
    expect(err).toBeInstanceOf(AigridError);
    expect(chunks).toBe(3);
    await waitFor(() => peers.every((p) => p.sessionCount === 0), 5000, 'sessions released on every peer');
    const after = served();
    await new Promise((r) => setTimeout(r, 300));
    expect(served()).toBe(after);
  });

  it('contributes and is its own route: a lone peer serves itself the golden tokens', async () => {
    const alone = await connect({ signal: net.server.wsUrl, network: 'sdk-alone' });
    try {
      const contribution = await alone.contribute({ memoryBudgetMB: 64, backend: 'cpu', models: [{ source: `${net.files.url}/tiny-llama`, modelId: 'tiny-llama', replication: 1 }] });
      await waitFor(() => contribution.status()[0]?.state === 'ready', 30_000, 'the lone peer ready');
      const g = (await net.model('tiny-llama')).golden[0]!;
      const out = await alone.generate({ model: 'tiny-llama', prompt: g.ids, maxTokens: g.greedy.length, temperature: 0, stopTokens: [] });
      expect(out.tokens).toEqual(g.greedy);
      expect(out.aigrid.route).toEqual([{ peerId: contribution.peerId, start: 0, end: 4 }]);
      expect(contribution.tokensServed).toBeGreaterThanOrEqual(g.ids.length + g.greedy.length - 1);
      // It made the network, so it owns it: it sets who serves; a later client may not.
      const later = await connect({ signal: net.server.wsUrl, network: 'sdk-alone' });
      try {
        await failure(later.setPolicy({ servers: 'anyone' }), 'ERR_PERMISSION_DENIED');
        await failure(later.withdraw('tiny-llama'), 'ERR_PERMISSION_DENIED', 'withdraw');
      } finally {
        later.close();
      }
      await alone.setPolicy({ servers: [alone.peerId] });
      await alone.withdraw('tiny-llama');
      expect((await alone.models.list()).data).toEqual([]);
      await waitFor(() => contribution.status().length === 0, 5000, 'the withdrawn model unloaded');
      contribution.stop();
    } finally {
      alone.close();
    }
  });

  it('serves light clients: the peers at the ends hold embedding and head, the client no weights', async () => {
    const light = await connect({ signal: net.server.wsUrl, network: 'sdk-light' });
    const lightPeers = [await net.peer('sdk-light', 'light-peer-a'), await net.peer('sdk-light', 'light-peer-b')];
    try {
      const spec = await light.serve({ source: `${net.files.url}/tiny-llama`, modelId: 'tiny-llama', replication: 1, light: true });
      expect(spec.light).toBe(true);
      expect(spec.headBytes).toBeGreaterThan(0);
      await waitFor(async () => (await light.models.list()).data[0]?.health === 'ready', 30_000, 'light tiny-llama ready');
      const g = (await net.model('tiny-llama')).golden[1]!;
      const out = await light.generate({ model: 'tiny-llama', prompt: g.ids, maxTokens: g.greedy.length, temperature: 0, stopTokens: [] });
      expect(out.tokens).toEqual(g.greedy);
      const ends = lightPeers.flatMap((p) => p.status()).filter((st) => st.start === 0 || st.end === 4);
      expect(ends.length).toBeGreaterThan(0);
    } finally {
      light.close();
      for (const p of lightPeers) p.close();
    }
  });

  it('shrinks the default max_tokens to the room the prompt leaves in the context', async () => {
    const reply = await grid.completions.create({ model: 'tiny-llama', prompt: 'hello', temperature: 0, stop: null });
    expect(reply.usage.total_tokens).toBeLessThanOrEqual(256); // tiny-llama's context
  });

  it("runs the README's Node snippet against the built package and prints the SDK's reply", async () => {
    const snippet = fileURLToPath(new URL('./snippets/node-sdk.mjs', import.meta.url));
    const { stdout } = await run(process.execPath, [snippet, net.server.wsUrl, NETWORK], { cwd: fileURLToPath(new URL('..', import.meta.url)) });
    const whole = await grid.chat.completions.create({ model: 'tiny-llama', messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 16, temperature: 0 });
    expect(stdout).toBe(`${whole.choices[0]!.message.content}\n`);
  });

  it('names what is wrong with a request', async () => {
    await failure(grid.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }), 'ERR_UNKNOWN_MODEL', 'tiny-llama');
    await failure(grid.chat.completions.create({ model: 'tiny-llama', messages: [] }), 'ERR_INVALID_ARGUMENT', 'messages');
    await failure(grid.completions.create({ model: 'tiny-llama', prompt: 'hi', temperature: 3 }), 'ERR_INVALID_ARGUMENT', 'temperature');
    await failure(grid.completions.create({ model: 'tiny-llama', prompt: 'hi', n: 2 }), 'ERR_INVALID_ARGUMENT', 'n must be 1');
    await failure(grid.completions.create({ model: 'tiny-llama', prompt: 'hi', max_tokens: 100_000 }), 'ERR_INVALID_ARGUMENT', 'context');
    const aborted = AbortSignal.abort();
    await failure(grid.completions.create({ model: 'tiny-llama', prompt: 'hi' }, { signal: aborted }), 'ERR_ABORTED');
    await failure(connect({ signal: 'http://nowhere', network: NETWORK }), 'ERR_INVALID_ARGUMENT', 'ws://');
  });
});

/** The tokens up to (not including) tiny-llama's end of sequence, as a reply ends there. */
function untilEos(tokens: number[]): number[] {
  const eos = tokens.indexOf(2);
  return eos < 0 ? tokens : tokens.slice(0, eos);
}
