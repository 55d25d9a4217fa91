// Whole-model pipeline blocks on a real grid: a signaling server, the tiny BERT fixtures served
// over HTTP, two Node peers contributing through the SDK. Creating a feature-extraction block has
// the coordinator place it on both (its minReplicas); the SDK's embeddings.create, blocks.run and
// the gateway's POST /v1/embeddings (through the official `openai` client, base64 and float) give
// the float64 reference's embeddings and labels; a replica that leaves is failed over; hostile
// calls (no ticket, another client's name, a flood) are refused by name; the reserved model ids
// cannot be served or withdrawn by hand; deleting the block withdraws it from its peers.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Contribution, type Grid } from '../client/sdk/node.ts';
import { startGateway, type Gateway } from '../client/gateway/index.ts';
import { encodeControl, MAX_PIPELINE_INPUTS, PipelineAnswerSchema, PipelineFrame, pipelineModelId, type PipelineAnswer } from '../protocol/index.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { bertFixture, writeBertFixtures } from './fixtures/onnx-bert.ts';
import { bertEncode, bertHiddenStates, classify, meanPooledEmbedding, widen } from './fixtures/bert-reference.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { waitFor } from './helpers/wait.ts';

const NETWORK = 'pipelines';
const TEXT = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] };
const EMBED = 'embedding.bert:1';
const CLASSIFY = 'classifier.bert:1';
const TEXTS = ['Hello world!', 'Once upon a time, a little robot wanted to learn how to paint the sky.', 'The cat sat.'];
const TOLERANCE = 1e-5;

const fixture = bertFixture();
const weights = widen(fixture.weights);
const hiddenOf = (text: string) => {
  const { ids, typeIds } = bertEncode(fixture.vocab, text);
  return bertHiddenStates(fixture.config, weights, ids, typeIds);
};
const referenceEmbedding = (text: string) => [...meanPooledEmbedding(hiddenOf(text))];
const referenceScores = (text: string) => [...classify(fixture.config, weights, hiddenOf(text)).probs];
const maxDiff = (a: readonly number[], b: readonly number[]) => (a.length !== b.length ? Infinity : Math.max(...a.map((v, i) => Math.abs(v - b[i]!))));

let dir: string;
let server: SignalingServer;
let files: RangeServer;
let client: Grid;
const contributors: { grid: Grid; contribution: Contribution }[] = [];

async function contributor(): Promise<{ grid: Grid; contribution: Contribution }> {
  const grid = await connect({ signal: server.wsUrl, network: NETWORK });
  const contribution = await grid.contribute({ memoryBudgetMB: 256, backend: 'cpu' });
  const c = { grid, contribution };
  contributors.push(c);
  return c;
}

const sorted = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== 0).sort());
const health = async (modelId: string) => (await client.models.list()).data.find((m) => m.id === modelId);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'aigrid-pipelines-'));
  await writeBertFixtures(dir);
  server = await startSignalingServer();
  files = await startRangeServer(dir);
  client = await connect({ signal: server.wsUrl, network: NETWORK });
  await contributor();
  await contributor();
  const block = (uri: string, task: 'feature-extraction' | 'text-classification', folder: string) =>
    client.blocks.create({ uri, model: { kind: 'pipeline', task, model: `${files.url}/${folder}`, memoryMB: 32 }, minReplicas: 2, inputSchema: TEXT, outputSchema: { type: 'object' } });
  await block(EMBED, 'feature-extraction', 'bert-embed');
  await block(CLASSIFY, 'text-classification', 'bert-classify');
  for (const uri of [EMBED, CLASSIFY]) await waitFor(async () => (await health(pipelineModelId(uri)))?.health === 'ready', 60_000, `${uri} ready on two replicas`);
}, 120_000);

afterAll(async () => {
  client?.close();
  for (const { grid, contribution } of contributors) {
    contribution.stop();
    grid.close();
  }
  await files?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('pipeline blocks', () => {
  it('are placed on peers that run their task, one layer each, and listed with their kind', async () => {
    const info = await health(pipelineModelId(EMBED));
    expect(info?.spec.pipeline).toEqual({ task: 'feature-extraction' });
    expect(info?.coverage).toMatchObject({ layers: 1, replication: 2, ready: [2] });
    for (const { contribution } of contributors) {
      expect(contribution.status().map((s) => [s.modelId, s.start, s.end, s.state]).sort()).toEqual([
        [pipelineModelId(CLASSIFY), 0, 1, 'ready'],
        [pipelineModelId(EMBED), 0, 1, 'ready'],
      ]);
    }
  });

  it('each call answered is paid once, by the client to the replica that ran it (metered credits)', async () => {
    await client.credits.setRules({ mode: 'metered', pricePerCall: 3 });
    // Credits requests are limited to 5 a second per socket: this polls at 4.
    const balances = async () => {
      await new Promise((resolve) => setTimeout(resolve, 250));
      const rows = await client.credits.balances({ top: 100 });
      return Object.fromEntries(rows.map((r) => [r.key, r.balance]));
    };
    const before = await balances();
    const answered: string[] = [];
    for (let i = 0; i < 4; i++) answered.push((await client.embeddings.create({ model: EMBED, input: TEXTS[i % 3]! })).aigrid.peerId);
    const expected = { ...before, [client.peerId]: (before[client.peerId] ?? 0) - 4 * 3 };
    for (const peer of answered) expected[peer] = (expected[peer] ?? 0) + 3;
    await waitFor(async () => JSON.stringify(sorted(await balances())) === JSON.stringify(sorted(expected)), 15_000, 'both sides reported and settled');
    await client.credits.setRules({ mode: 'free' });
  });

  it('embeddings.create gives the reference embeddings, OpenAI-shaped, float and base64', async () => {
    const out = await client.embeddings.create({ model: EMBED, input: TEXTS });
    expect(out.object).toBe('list');
    expect(out.model).toBe(EMBED);
    expect(out.data.map((d) => d.index)).toEqual([0, 1, 2]);
    out.data.forEach((d, i) => expect(maxDiff(d.embedding as number[], referenceEmbedding(TEXTS[i]!))).toBeLessThan(TOLERANCE));
    const tokens = TEXTS.reduce((n, t) => n + bertEncode(fixture.vocab, t).ids.length, 0);
    expect(out.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });
    expect(contributors.map((c) => c.contribution.peerId)).toContain(out.aigrid.peerId);

    const single = await client.embeddings.create({ model: pipelineModelId(EMBED), input: TEXTS[0]!, encoding_format: 'base64' });
    const bytes = Buffer.from(single.data[0]!.embedding as string, 'base64');
    const floats = [...new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)];
    expect(maxDiff(floats, referenceEmbedding(TEXTS[0]!))).toBeLessThan(TOLERANCE);
  });

  it('blocks.run classifies with every label scored as the reference does, best first', async () => {
    const out = await client.blocks.run(CLASSIFY, TEXTS);
    expect(out.labels).toHaveLength(TEXTS.length);
    out.labels!.forEach((row, i) => {
      const probs = referenceScores(TEXTS[i]!);
      expect(row.map((l) => l.label).sort()).toEqual(['negative', 'positive']);
      expect(row[0]!.score).toBeGreaterThanOrEqual(row[1]!.score);
      for (const { label, score } of row) expect(Math.abs(score - probs[label === 'negative' ? 0 : 1]!)).toBeLessThan(TOLERANCE);
    });
  });

  it('refuses bad requests by name before any replica is asked', async () => {
    await expect(client.embeddings.create({ model: CLASSIFY, input: 'x' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('text-classification') });
    await expect(client.embeddings.create({ model: 'embedding.none:1', input: 'x' })).rejects.toMatchObject({ code: 'ERR_UNKNOWN_BLOCK' });
    await expect(client.embeddings.create({ model: 'tiny-llama', input: 'x' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(client.embeddings.create({ model: EMBED, input: [] })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(client.embeddings.create({ model: EMBED, input: Array(MAX_PIPELINE_INPUTS + 1).fill('a') })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(client.embeddings.create({ model: EMBED, input: 'x', dimensions: 7 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('32 dimensions') });
    await expect(client.chat.completions.create({ model: pipelineModelId(EMBED), messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  it('the gateway answers the official openai client on /v1/embeddings', async () => {
    const gateway: Gateway = await startGateway({ grid: client, port: 0 });
    try {
      const openai = new OpenAI({ baseURL: gateway.url, apiKey: 'unused', maxRetries: 0 });
      // The client asks base64 by default and decodes it to floats.
      const out = await openai.embeddings.create({ model: EMBED, input: TEXTS });
      out.data.forEach((d, i) => expect(maxDiff(d.embedding, referenceEmbedding(TEXTS[i]!))).toBeLessThan(TOLERANCE));
      const floats = await openai.embeddings.create({ model: EMBED, input: TEXTS[1]!, encoding_format: 'float' });
      expect(maxDiff(floats.data[0]!.embedding, referenceEmbedding(TEXTS[1]!))).toBeLessThan(TOLERANCE);
      await expect(openai.embeddings.create({ model: 'embedding.none:1', input: 'x' })).rejects.toMatchObject({ status: 404 });
      await expect(openai.embeddings.create({ model: EMBED, input: [1, 2, 3] as unknown as string })).rejects.toMatchObject({ status: 400 });
    } finally {
      await gateway.close();
    }
  });

  it('refuses hostile calls by name: no ticket, another client named, and a flood past the bounds', async () => {
    const raw = await connect({ signal: server.wsUrl, network: NETWORK });
    try {
      const target = contributors[0]!.contribution.peerId;
      const answers: PipelineAnswer[] = [];
      raw.mesh.on('frame', (from, frame) => {
        if (from === target && frame.type === PipelineFrame.answer) answers.push(PipelineAnswerSchema.parse(JSON.parse(new TextDecoder().decode(frame.payload))));
      });
      const send = (call: object) => raw.mesh.send(target, PipelineFrame.call, encodeControl(call));
      const modelId = pipelineModelId(EMBED);
      // Frames that are not a call at all (not JSON; past the 128 KiB bound) are dropped with a named warning.
      const warnings: string[] = [];
      contributors[0]!.contribution.on('warning', (err) => warnings.push(err.code));
      await raw.mesh.send(target, PipelineFrame.call, new Uint8Array([0xff, 0x00, 0x7b]));
      await send({ callId: 9, modelId, client: raw.peerId, inputs: ['x'.repeat(8000)], pad: 'y'.repeat(140 * 1024) });
      await waitFor(() => warnings.filter((c) => c === 'ERR_FRAME_MALFORMED').length === 2, 10_000, 'both frames refused');
      await send({ callId: 1, modelId, client: raw.peerId, inputs: ['a'] });
      await send({ callId: 2, modelId, client: client.peerId, inputs: ['a'] });
      await send({ callId: 3, modelId: pipelineModelId('embedding.other:1'), client: raw.peerId, inputs: ['a'] });
      // Sent together, so they reach the peer before its first refusal is done.
      await Promise.all(Array.from({ length: 10 }, (_, i) => send({ callId: 100 + i, modelId, client: raw.peerId, inputs: ['a'] })));
      await waitFor(() => answers.length >= 13, 10_000, 'every call answered');
      const byId = new Map(answers.map((a) => [a.callId, a]));
      expect(byId.has(9)).toBe(false);
      expect(byId.get(1)).toMatchObject({ ok: false, code: 'ERR_PERMISSION_DENIED', message: expect.stringContaining('ticket') });
      expect(byId.get(2)).toMatchObject({ ok: false, code: 'ERR_PERMISSION_DENIED', message: expect.stringContaining('another client') });
      expect(byId.get(3)).toMatchObject({ ok: false, code: 'ERR_UNKNOWN_MODEL' });
      const flood = answers.filter((a) => a.callId >= 100);
      // Four in flight per client: the rest are turned away at once, never queued.
      expect(flood.filter((a) => !a.ok && a.code === 'ERR_OVERLOADED').length).toBeGreaterThanOrEqual(6);
      expect(flood.every((a) => !a.ok)).toBe(true);
      // The replica still serves honest calls.
      const out = await client.embeddings.create({ model: EMBED, input: TEXTS[0]! });
      expect(maxDiff(out.data[0]!.embedding as number[], referenceEmbedding(TEXTS[0]!))).toBeLessThan(TOLERANCE);
    } finally {
      raw.close();
    }
  });

  it('the reserved ids cannot be served or withdrawn by hand, and a block whose weights may not be fetched is refused whole', async () => {
    const spec = { modelId: pipelineModelId(EMBED), source: `${files.url}/bert-embed`, numLayers: 1, hiddenSize: 1, layerBytes: 1, weightDtype: 'f32' as const, replication: 1 };
    // serve and withdraw are sent, not awaited: the server's refusals come back as errors.
    const refusals: string[] = [];
    const onWarning = (err: { code: string; message: string }) => err.message.includes('belong to pipeline blocks') && refusals.push(err.code);
    client.mesh.on('warning', onWarning);
    try {
      await client.serve(spec);
      client.mesh.signaling.send({ type: 'withdraw', modelId: pipelineModelId(EMBED) });
      await waitFor(() => refusals.length === 2, 5000, 'serve and withdraw refused');
      expect(refusals).toEqual(['ERR_INVALID_ARGUMENT', 'ERR_INVALID_ARGUMENT']);
    } finally {
      client.mesh.off('warning', onWarning);
    }
    expect((await health(pipelineModelId(EMBED)))?.health).toBe('ready');
    await expect(client.blocks.create({ uri: 'embedding.local:1', model: { kind: 'pipeline', task: 'feature-extraction', model: 'file:///etc/passwd' }, inputSchema: TEXT, outputSchema: TEXT })).rejects.toMatchObject({
      code: 'ERR_INVALID_BLOCK',
      message: expect.stringContaining('model.model'),
    });
    await expect(client.blocks.get('embedding.local:1')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_BLOCK' });
  });

  it('fails over to the other replica when the one that answered leaves, then deleting the block withdraws it', async () => {
    const first = await client.embeddings.create({ model: EMBED, input: TEXTS[2]! });
    const leaving = contributors.find((c) => c.contribution.peerId === first.aigrid.peerId)!;
    leaving.contribution.stop();
    leaving.grid.close();
    const again = await client.embeddings.create({ model: EMBED, input: TEXTS[2]! });
    expect(again.aigrid.peerId).not.toBe(first.aigrid.peerId);
    expect(again.data[0]!.embedding).toEqual(first.data[0]!.embedding);

    const staying = contributors.find((c) => c !== leaving)!;
    await client.blocks.delete(EMBED);
    await waitFor(async () => (await health(pipelineModelId(EMBED))) === undefined, 10_000, 'the block withdrawn');
    await waitFor(() => !staying.contribution.status().some((s) => s.modelId === pipelineModelId(EMBED)), 10_000, 'the replica unloaded it');
    await expect(client.embeddings.create({ model: EMBED, input: 'x' })).rejects.toMatchObject({ code: 'ERR_UNKNOWN_BLOCK' });
  });
});
