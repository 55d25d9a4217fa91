// The gateway under load, over a real signaling server and a real Node peer serving tiny-llama:
// a burst of 100 chat requests is answered with the SDK's text or refused 429 with Retry-After
// (never a 5xx, never a timeout); a burst with room for all is paced below the server's rates so
// no route ask is dropped; a request past its deadline ends with a named error (504, or a stream's
// error event); close() lets running requests finish within its grace and refuses new ones; an
// unused model's client is let go; a model whose spec changes is served from the new spec.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway, type GatewayGrid, type GatewayOptions } from '../client/gateway/index.ts';
import { GridPeer } from '../client/grid/index.ts';
import { openModelNode } from '../client/model/checkpoint/node.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { connect, type Grid } from '../client/sdk/node.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';

const NETWORK = 'gateway-load';
const MODEL = 'tiny-llama';
const chat = { model: MODEL, messages: [{ role: 'user' as const, content: 'the quick brown fox' }], max_tokens: 8, temperature: 0 };

let net: GridNet;
let peer: GridPeer;
/** Serves the model (its owner) and gives the expected replies straight from the SDK. */
let owner: Grid;
const grids: Grid[] = [];
const gateways: Gateway[] = [];
/** Milliseconds the peer waits before each frame it sends: a slow peer, for deadlines and shutdown. */
let peerDelayMs = 0;

beforeAll(async () => {
  net = await startGridNet();
  const mesh = await net.join(NETWORK, 'load-peer');
  const send = mesh.send.bind(mesh);
  mesh.send = async (to, type, payload) => {
    if (peerDelayMs > 0) await new Promise((r) => setTimeout(r, peerDelayMs));
    return send(to, type, payload);
  };
  peer = new GridPeer({ mesh, backend: 'cpu', open: checkpointOpener(openModelNode, { cache: false }) });
  owner = await connect({ signal: net.server.wsUrl, network: NETWORK, verify: false });
  await owner.serve({ source: `${net.files.url}/${MODEL}`, modelId: MODEL, replication: 1 });
  await waitFor(async () => (await owner.models.list()).data[0]?.health === 'ready', 30_000, `${MODEL} ready`);
});

afterAll(async () => {
  for (const g of gateways) await g.close(0);
  for (const g of grids) g.close();
  owner?.close();
  peer?.close();
  await net?.close();
});

/** A gateway on a grid client of its own. */
async function gatewayWith(options: GatewayOptions): Promise<{ gateway: Gateway; grid: Grid }> {
  const grid = await connect({ signal: net.server.wsUrl, network: NETWORK, verify: false });
  grids.push(grid);
  const gateway = await startGateway({ grid, port: 0, ...options });
  gateways.push(gateway);
  return { gateway, grid };
}

function post(gateway: Gateway, path: string, body: object): Promise<Response> {
  return fetch(`${gateway.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
}

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** The events of a server-sent stream's body: parsed chunks, and whether it ended with [DONE]. */
function events(text: string): { chunks: Record<string, unknown>[]; done: boolean } {
  const parts = text.split('\n\n').filter((p) => p !== '');
  expect(parts.every((p) => p.startsWith('data: '))).toBe(true);
  const data = parts.map((p) => p.slice('data: '.length));
  const done = data.at(-1) === '[DONE]';
  return { chunks: (done ? data.slice(0, -1) : data).map((d) => JSON.parse(d) as Record<string, unknown>), done };
}

const content = (chunks: Record<string, unknown>[]) =>
  chunks.map((c) => (c as { choices?: { delta?: { content?: string } }[] }).choices?.[0]?.delta?.content ?? '').join('');

describe('gateway under load', () => {
  it('answers 100 concurrent chat requests with the SDK text or 429 with Retry-After, never a 5xx', async () => {
    const expected = (await owner.chat.completions.create(chat)).choices[0]!.message.content;
    expect(expected.length).toBeGreaterThan(0);
    const { gateway } = await gatewayWith({ maxConcurrent: 4, maxQueued: 16 });
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const res = await post(gateway, '/chat/completions', chat);
        return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { choices?: { message: { content: string } }[] } & Partial<ErrorBody> };
      }),
    );
    const elapsed = performance.now() - started;
    const answered = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(results.filter((r) => r.status !== 200 && r.status !== 429).map((r) => `${r.status} ${r.body.error?.code}`)).toEqual([]);
    for (const r of answered) expect(r.body.choices![0]!.message.content).toBe(expected);
    for (const r of refused) {
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(r.body.error).toMatchObject({ code: 'ERR_OVERLOADED', type: 'invalid_request_error', param: null });
    }
    // Everything that fit the limit and the queue ran; the rest was told to come back, at once.
    expect(answered.length).toBeGreaterThanOrEqual(20);
    expect(refused.length).toBeGreaterThan(0);
    expect(elapsed).toBeLessThan(30_000);
  });

  it('paces a burst with room for all below the signaling server rates: no route ask is dropped', async () => {
    const { gateway, grid } = await gatewayWith({ maxConcurrent: 100, maxQueued: 100 });
    const refusals: string[] = [];
    grid.mesh.signaling.on('serverError', (err) => refusals.push(`${err.code}: ${err.message}`));
    const expected = (await owner.chat.completions.create(chat)).choices[0]!.message.content;
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const res = await post(gateway, '/chat/completions', chat);
        return { status: res.status, body: (await res.json()) as { choices?: { message: { content: string } }[] } & Partial<ErrorBody> };
      }),
    );
    expect(results.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.body.error?.code}: ${r.body.error?.message}`)).toEqual([]);
    for (const r of results) expect(r.body.choices![0]!.message.content).toBe(expected);
    expect(refusals).toEqual([]);
    // Started at the pacer's rate (15 a second by default after a burst of 7), not all at once.
    expect(performance.now() - started).toBeGreaterThan(((100 - 8) / 15) * 1000 * 0.9);
  });

  it('ends a request at its deadline: 504 before any output, an error event on a stream', async () => {
    const { gateway } = await gatewayWith({ maxConcurrent: 1, requestTimeoutMs: 1_500 });
    peerDelayMs = 25; // 200 tokens take some 5 s now
    try {
      const long = { model: MODEL, prompt: 'once upon a time', max_tokens: 200, temperature: 0 };
      const started = performance.now();
      const streamed = post(gateway, '/completions', { ...long, stream: true });
      // The second waits for the first's turn and runs out of time still waiting.
      const whole = post(gateway, '/completions', long);
      const stream = await streamed;
      expect(stream.status).toBe(200);
      const { chunks, done } = events(await stream.text());
      expect(done).toBe(false);
      expect(chunks.length).toBeGreaterThan(1);
      expect(chunks.at(-1)).toMatchObject({ error: { code: 'ERR_DEADLINE_EXCEEDED', type: 'server_error' } });
      const refused = await whole;
      expect(refused.status).toBe(504);
      expect(((await refused.json()) as ErrorBody).error).toMatchObject({ code: 'ERR_DEADLINE_EXCEEDED', type: 'server_error' });
      const elapsed = performance.now() - started;
      expect(elapsed).toBeGreaterThan(1_400);
      expect(elapsed).toBeLessThan(3_500);
      // The generation stopped on the peer too.
      await waitFor(() => peer.sessionCount === 0, 5_000, 'the session released on the peer');
    } finally {
      peerDelayMs = 0;
    }
  });

  it('shuts down gracefully: new and waiting requests get 503, running ones finish or end with a clear error', async () => {
    const { gateway } = await gatewayWith({ maxConcurrent: 2 });
    const short = { model: MODEL, prompt: 'once upon a time', max_tokens: 16, temperature: 0 };
    const expected = (await owner.completions.create(short)).choices[0]!.text;
    peerDelayMs = 25;
    try {
      const quick = await post(gateway, '/completions', { ...short, stream: true });
      const slow = await post(gateway, '/completions', { ...short, max_tokens: 200, stream: true });
      expect([quick.status, slow.status]).toEqual([200, 200]);
      const waiting = post(gateway, '/completions', short);
      await new Promise((r) => setTimeout(r, 50)); // it is in the queue; the quick one runs some 400 ms
      const started = performance.now();
      const closing = gateway.close(1_500);

      const late = await post(gateway, '/chat/completions', chat);
      expect(late.status).toBe(503);
      expect(((await late.json()) as ErrorBody).error).toMatchObject({ code: 'ERR_SERVER_SHUTDOWN' });
      const queued = await waiting;
      expect(queued.status).toBe(503);
      expect(((await queued.json()) as ErrorBody).error.code).toBe('ERR_SERVER_SHUTDOWN');

      const finished = events(await quick.text());
      expect(finished.done).toBe(true);
      expect(finished.chunks.map((c) => (c as { choices: { text: string }[] }).choices[0]?.text ?? '').join('')).toBe(expected);
      const cut = events(await slow.text());
      expect(cut.done).toBe(false);
      expect(cut.chunks.at(-1)).toMatchObject({ error: { code: 'ERR_SERVER_SHUTDOWN' } });

      await closing;
      expect(performance.now() - started).toBeLessThan(3_500);
      await expect(fetch(`${gateway.url}/models`)).rejects.toThrow();
      await waitFor(() => peer.sessionCount === 0, 5_000, 'sessions released on the peer');
    } finally {
      peerDelayMs = 0;
    }
  });

  it('lets go of an unused model client, and opens it again when asked', async () => {
    const grid = await connect({ signal: net.server.wsUrl, network: NETWORK, verify: false });
    grids.push(grid);
    const released: string[] = [];
    const watched: GatewayGrid = {
      models: grid.models,
      chat: grid.chat,
      completions: grid.completions,
      mesh: grid.mesh,
      releaseModel: (id, drained) => {
        released.push(id);
        grid.releaseModel(id, drained);
      },
    };
    const gateway = await startGateway({ grid: watched, port: 0, modelIdleMs: 300 });
    gateways.push(gateway);
    const expected = (await owner.chat.completions.create(chat)).choices[0]!.message.content;
    const ask = async () => ((await (await post(gateway, '/chat/completions', chat)).json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
    expect(await ask()).toBe(expected);
    expect(released).toEqual([]);
    await waitFor(() => released.length === 1, 3_000, 'the idle model let go');
    expect(released).toEqual([MODEL]);
    expect(await ask()).toBe(expected);
  });

  it('serves a model from its new spec once the spec changes on the network', async () => {
    const { gateway } = await gatewayWith({ modelListTtlMs: 200 });
    const prompt = { model: MODEL, prompt: 'once upon a time', max_tokens: 12, temperature: 0 };
    const text = async () => {
      const res = await post(gateway, '/completions', prompt);
      const body = (await res.json()) as { choices?: { text: string }[] } & Partial<ErrorBody>;
      expect(res.status, JSON.stringify(body.error)).toBe(200);
      return body.choices![0]!.text;
    };
    const before = await text();
    expect(before).toBe((await owner.completions.create(prompt)).choices[0]!.text);

    // The owner serves another checkpoint (2 layers, another tokenizer) under the same id.
    const other = `${net.files.url}/tiny-llama3`;
    await owner.serve({ source: other, modelId: MODEL, replication: 1 });
    await waitFor(
      async () => {
        const list = (await (await fetch(`${gateway.url}/models`)).json()) as { data: { spec: { source: string }; health: string }[] };
        return list.data[0]?.spec.source === other && list.data[0]?.health === 'ready';
      },
      30_000,
      'the new spec ready, as the gateway lists it',
    );
    const fresh = await connect({ signal: net.server.wsUrl, network: NETWORK, verify: false });
    grids.push(fresh);
    const expected = (await fresh.completions.create(prompt)).choices[0]!.text;
    expect(expected).not.toBe(before);
    expect(await text()).toBe(expected);
  });
});
