// Running vDAGs in the client: a chain of two LLM nodes over a real grid (a signaling server, a
// Node CPU peer serving tiny-llama, the SDK) gives what the two generations give run by hand, with
// the first node's text streamed as token events; the runner starts the branches of a fan-out
// together and hands a join the outputs of all its inputs keyed by node id; a failing node ends
// the run with its error named after the node; an LLM node feeds an embedding node (a pipeline block
// of the tiny BERT fixture, placed on the same Node peer) whose vector is the reference's; the
// network owner's policies reshape a node's input and output in the sandbox (a fan-in merged by a
// pre-processing policy, an output rewritten by a post-processing one), and one that throws or
// loops leaves the value as it was, reported; the gateway's POST /v1/vdags/{id}/run answers the
// same outputs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileVdag } from '../plan/vdag.ts';
import type { Block, ModelSpec } from '../protocol/index.ts';
import { connect, type Contribution, type Grid, type VdagEvent } from '../client/sdk/node.ts';
import { runVdag } from '../client/sdk/vdag-run.ts';
import { startGateway } from '../client/gateway/index.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { FIXTURE_DIR, fixtures } from './fixtures/index.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bertFixture, writeBertFixtures } from './fixtures/onnx-bert.ts';
import { bertEncode, bertHiddenStates, meanPooledEmbedding, widen } from './fixtures/bert-reference.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { waitFor } from './helpers/wait.ts';

const MB = 1024 * 1024;
const TEXT = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] };
const NETWORK = 'vdag-run';

let server: SignalingServer;
let files: RangeServer;
let bertFiles: RangeServer;
let bertDir: string;
let peer: Grid;
let contribution: Contribution;
let client: Grid;

beforeAll(async () => {
  await fixtures();
  bertDir = await mkdtemp(join(tmpdir(), 'aigrid-vdag-bert-'));
  await writeBertFixtures(bertDir);
  server = await startSignalingServer();
  files = await startRangeServer(FIXTURE_DIR);
  bertFiles = await startRangeServer(bertDir);
  client = await connect({ signal: server.wsUrl, network: NETWORK });
  peer = await connect({ signal: server.wsUrl, network: NETWORK });
  contribution = await peer.contribute({ memoryBudgetMB: 8, backend: 'cpu' });
  const spec: ModelSpec = { modelId: 'tiny-llama', source: `${files.url}/tiny-llama`, numLayers: 4, hiddenSize: 64, layerBytes: MB, weightDtype: 'f32', replication: 1 };
  await client.serve(spec);
  await waitFor(async () => (await client.models.list()).data[0]?.health === 'ready', 60_000, 'tiny-llama ready');
  await client.blocks.create({ uri: 'llm.tiny-llama:1', model: { kind: 'llm', modelId: 'tiny-llama' }, tags: ['task=chat'], inputSchema: TEXT, outputSchema: TEXT });
  await client.blocks.create({ uri: 'embedding.bert:1', model: { kind: 'pipeline', task: 'feature-extraction', model: `${bertFiles.url}/bert-embed`, memoryMB: 1 }, inputSchema: TEXT, outputSchema: { type: 'object' } });
  await waitFor(async () => (await client.models.list()).data.find((m) => m.id === 'block/embedding.bert/1')?.health === 'ready', 60_000, 'embedding.bert ready');
}, 120_000);

afterAll(async () => {
  client?.close();
  contribution?.stop();
  peer?.close();
  await files?.close();
  await bertFiles?.close();
  await server?.close();
  if (bertDir) await rm(bertDir, { recursive: true, force: true });
});

describe('running a vDAG', () => {
  it('a chain of two LLM nodes gives what the two generations give by hand, streaming the text', async () => {
    await client.vdags.create({
      id: 'twice',
      nodes: [{ id: 'first', block: 'llm.tiny-llama:1' }, { id: 'second', select: { tags: ['task=chat'] } }],
      connections: [{ from: 'first', to: 'second' }],
      input: 'first',
      output: 'second',
    });
    const events: VdagEvent[] = [];
    const run = await client.vdags.run('twice', { text: 'Once upon a time', maxTokens: 8 }, { onEvent: (e) => events.push(e) });

    // By hand: greedy, 8 then 64 (the default) tokens, each generation's text the next one's prompt.
    const byHand = async (prompt: string, maxTokens: number) => {
      const out = await client.generate({ model: 'tiny-llama', prompt, maxTokens, temperature: 0 });
      const model = await client.completions.create({ model: 'tiny-llama', prompt, max_tokens: maxTokens, temperature: 0 });
      return { tokens: out.tokens, text: model.choices[0]!.text };
    };
    const first = await byHand('Once upon a time', 8);
    expect(first.tokens.length).toBeGreaterThan(0);
    expect(run.outputs.first).toEqual({ text: first.text });
    const second = await byHand(first.text, 64);
    expect(run.output).toEqual({ text: second.text });
    expect(run.outputs.second).toEqual(run.output);

    // Node events in order, and the first node's text streamed in pieces that add up to it.
    expect(events.filter((e) => e.type !== 'token').map((e) => `${e.type}:${e.node}`)).toEqual(['node-start:first', 'node-end:first', 'node-start:second', 'node-end:second']);
    const streamed = events.filter((e): e is Extract<VdagEvent, { type: 'token' }> => e.type === 'token' && e.node === 'first').map((e) => e.text);
    expect(streamed.join('')).toBe(first.text);
  });

  it('ends with the failing node named', async () => {
    await expect(client.vdags.run('twice', { prompt: 'not text' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/^node first \(llm\.tiny-llama:1\): an LLM node takes/) });
    await expect(client.vdags.run('nothing', 'hi')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_VDAG' });
  });

  it('an LLM node feeds an embedding node: the vector is the reference embedding of the generated text', async () => {
    await client.vdags.create({ id: 'embed', nodes: [{ id: 'story', block: 'llm.tiny-llama:1' }, { id: 'vec', block: 'embedding.bert:1' }], connections: [{ from: 'story', to: 'vec' }], input: 'story', output: 'vec' });
    const tokens: string[] = [];
    const run = await client.vdags.run('embed', { text: 'Once upon a time', maxTokens: 8 }, { onEvent: (e) => e.type === 'token' && tokens.push(e.text) });
    const { text } = run.outputs.story as { text: string };
    expect(tokens.join('')).toBe(text);
    const fixture = bertFixture();
    const { ids, typeIds } = bertEncode(fixture.vocab, text);
    const expected = meanPooledEmbedding(bertHiddenStates(fixture.config, widen(fixture.weights), ids, typeIds));
    const { embedding } = run.output as { embedding: number[] };
    expect(embedding).toHaveLength(expected.length);
    embedding.forEach((v, i) => expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-5));
  });
});

describe('policies in a vDAG', () => {
  it('only the network\'s owner sets them; a bad one is refused by name', async () => {
    const member = await connect({ signal: server.wsUrl, network: NETWORK });
    try {
      await expect(member.policies.create({ id: 'mine', hook: 'vdag', code: 'function eval(p, x) { return x; }' })).rejects.toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
      await expect(client.policies.create({ id: 'Bad Id', hook: 'vdag', code: 'x' })).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID', message: expect.stringMatching(/^id:/) });
      await expect(client.policies.create({ id: 'odd', hook: 'gossip' as 'vdag', code: 'x' })).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID', message: expect.stringMatching(/^hook:/) });
      await expect(client.policies.get('none')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_POLICY' });
    } finally {
      member.close();
    }
  });

  it('fan out to two LLM nodes, merge them with a pre-processing policy, and rewrite the output with a post-processing one', async () => {
    // The join gets { left: { text }, right: { text } }: the policy makes one prompt of them.
    await client.policies.create({ id: 'merge', hook: 'vdag', parameters: { glue: ' | ' }, code: 'function eval(p, input) { return { text: input.left.text + p.glue + input.right.text, maxTokens: 6 }; }' });
    await client.policies.create({ id: 'shout', hook: 'vdag', code: 'function eval(p, output, context) { return { text: output.text.toUpperCase(), node: context.node }; }' });
    await client.vdags.create({
      id: 'fan',
      nodes: [
        { id: 'start', block: 'llm.tiny-llama:1' },
        { id: 'left', block: 'llm.tiny-llama:1' },
        { id: 'right', block: 'llm.tiny-llama:1' },
        { id: 'end', block: 'llm.tiny-llama:1', join: 'all', preprocess: 'merge', postprocess: 'shout' },
      ],
      connections: [{ from: 'start', to: 'left' }, { from: 'start', to: 'right' }, { from: 'left', to: 'end' }, { from: 'right', to: 'end' }],
      input: 'start',
      output: 'end',
    });
    const events: VdagEvent[] = [];
    const run = await client.vdags.run('fan', { text: 'Hello', maxTokens: 4 }, { onEvent: (e) => events.push(e) });
    const { outputs } = run;
    const text = (id: string) => (outputs[id] as { text: string }).text;
    // left and right run the same greedy generation on start's text; end on the merged prompt.
    expect(text('left')).toBe(text('right'));
    const merged = await client.completions.create({ model: 'tiny-llama', prompt: `${text('left')} | ${text('right')}`, max_tokens: 6, temperature: 0 });
    expect(run.output).toEqual({ text: merged.choices[0]!.text.toUpperCase(), node: 'end' });
    expect(events.some((e) => e.type === 'policy-failure')).toBe(false);
  });

  it('a policy that throws or loops leaves the value as it was and says so', async () => {
    await client.policies.create({ id: 'broken', hook: 'vdag', code: 'function eval() { throw new Error("nope"); }' });
    await client.policies.create({ id: 'spin', hook: 'vdag', code: 'function eval() { for (;;) {} }' });
    await client.policies.create({ id: 'for-routes', hook: 'route', code: 'function eval(p, x) { return x; }' });
    await client.vdags.create({ id: 'guarded', nodes: [{ id: 'say', block: 'llm.tiny-llama:1', preprocess: 'broken', postprocess: 'spin' }], input: 'say', output: 'say' });
    const events: VdagEvent[] = [];
    const run = await client.vdags.run('guarded', { text: 'Hello', maxTokens: 4 }, { onEvent: (e) => events.push(e) });
    const plain = await client.completions.create({ model: 'tiny-llama', prompt: 'Hello', max_tokens: 4, temperature: 0 });
    expect(run.output).toEqual({ text: plain.choices[0]!.text });
    expect(events.filter((e) => e.type === 'policy-failure').map((e) => `${e.policy}:${e.code}`)).toEqual(['broken:ERR_POLICY_FAILED', 'spin:ERR_POLICY_LIMIT']);
    // A policy of another hook is not a vDAG's.
    await client.vdags.create({ id: 'misused', nodes: [{ id: 'say', block: 'llm.tiny-llama:1', preprocess: 'for-routes' }], input: 'say', output: 'say' });
    await expect(client.vdags.run('misused', 'Hello')).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID', message: expect.stringMatching(/for the route hook, not vdag/) });
  });
});

describe('POST /v1/vdags/{id}/run on the gateway', () => {
  it('answers the output of every node, and named HTTP errors', async () => {
    const gateway = await startGateway({ grid: client, port: 0 });
    try {
      const post = (id: string, body: unknown) => fetch(`${gateway.url}/vdags/${id}/run`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      const res = await post('twice', { input: { text: 'Once upon a time', maxTokens: 8 } });
      expect(res.status).toBe(200);
      const direct = await client.vdags.run('twice', { text: 'Once upon a time', maxTokens: 8 });
      expect(await res.json()).toEqual({ object: 'vdag.run', id: 'twice', output: direct.output, outputs: direct.outputs });
      expect((await post('nothing', { input: 'hi' })).status).toBe(404);
      expect((await post('twice', { text: 'no input field' })).status).toBe(400);
      const embedded = await post('embed', { input: { text: 'Once upon a time', maxTokens: 4 } });
      expect(embedded.status).toBe(200);
      expect(((await embedded.json()) as { output: { embedding: number[] } }).output.embedding).toHaveLength(32);
    } finally {
      await gateway.close();
    }
  });
});

describe('the runner', () => {
  const block = (uri: string): Block => ({ uri, model: { kind: 'llm', modelId: 'm' }, tags: [], minReplicas: 1, maxReplicas: 1, inputSchema: {}, outputSchema: {}, owner: 'o', createdAt: 0, updatedAt: 0 });
  const dag = compileVdag(
    {
      id: 'diamond',
      nodes: [{ id: 'a', block: 'x.a:1' }, { id: 'b', block: 'x.b:1' }, { id: 'c', block: 'x.c:1' }, { id: 'd', block: 'x.d:1', join: 'all' }],
      connections: [{ from: 'a', to: 'b' }, { from: 'a', to: 'c' }, { from: 'b', to: 'd' }, { from: 'c', to: 'd' }],
      input: 'a',
      output: 'd',
    },
    ['x.a:1', 'x.b:1', 'x.c:1', 'x.d:1'].map(block),
  );

  it('starts the branches of a fan-out together and gives a join every input keyed by node id', async () => {
    const started: string[] = [];
    const release: (() => void)[] = [];
    const result = runVdag(dag, 1, async (node, input) => {
      started.push(node.node.id);
      if (node.node.id === 'a') return (input as number) + 1;
      if (node.node.id === 'd') return input;
      // b and c each wait until both have started: they must run side by side.
      await new Promise<void>((resolve) => {
        release.push(resolve);
        if (release.length === 2) release.forEach((r) => r());
      });
      return `${node.node.id}:${input as number}`;
    });
    expect(await result).toEqual({ output: { b: 'b:2', c: 'c:2' }, outputs: { a: 2, b: 'b:2', c: 'c:2', d: { b: 'b:2', c: 'c:2' } } });
    expect(started.slice(0, 3).sort()).toEqual(['a', 'b', 'c']);
  });

  it('a failing branch ends the run with its error, and the join never starts', async () => {
    const started: string[] = [];
    const run = runVdag(dag, 1, async (node) => {
      started.push(node.node.id);
      if (node.node.id === 'c') throw new Error('no luck');
      return 0;
    });
    await expect(run).rejects.toMatchObject({ message: 'node c (x.c:1): no luck' });
    expect(started).not.toContain('d');
  });
});
