// The OpenAI-compatible gateway over a grid of Node peers: the official `openai` client gets the
// SDK's replies (streamed and whole, chat and text), model lists and OpenAI-shaped errors; the
// wire format is OpenAI's byte for byte; a client that leaves stops the work on every peer; bad
// input of every kind is answered (never a crash or a hang); the CLI and the README's snippet run.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGatewayHandler, startGateway, type Gateway, type GatewayGrid } from '../client/gateway/index.ts';
import type { GridPeer } from '../client/grid/index.ts';
import { AigridError, connect, type Grid } from '../client/sdk/node.ts';
import { startSignalingServer } from '../signaling/server.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';

const NETWORK = 'gateway';
const MODEL = 'tiny-llama';
const BIN = fileURLToPath(new URL('../bin/aigrid.js', import.meta.url));
const SNIPPET = fileURLToPath(new URL('./snippets/openai-client.mjs', import.meta.url));
const messages = [{ role: 'user' as const, content: 'the quick brown fox' }];

let net: GridNet;
let grid: Grid;
const peers: GridPeer[] = [];
let gateway: Gateway;
let openai: OpenAI;
/** The signal the gateway passed with each SDK call, newest last. */
const signals: AbortSignal[] = [];

beforeAll(async () => {
  net = await startGridNet();
  for (const id of ['gw-peer-a', 'gw-peer-b']) peers.push(await net.peer(NETWORK, id));
  // No spot-checks: the abort tests count the tokens peers serve, and a check replays a reply.
  grid = await connect({ signal: net.server.wsUrl, network: NETWORK, verify: false });
  await grid.serve({ source: `${net.files.url}/${MODEL}`, modelId: MODEL, replication: 2 });
  await waitFor(async () => (await grid.models.list()).data[0]?.health === 'ready', 30_000, `${MODEL} ready on both peers`);
  gateway = await startGateway({ grid: watched(grid), port: 0 });
  openai = new OpenAI({ baseURL: gateway.url, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await gateway?.close();
  grid?.close();
  await net?.close();
});

/** The grid as the gateway sees it, keeping each call's abort signal. */
function watched(g: Grid): GatewayGrid {
  const keep = <T extends (params: never, options?: { signal?: AbortSignal }) => unknown>(create: T): T =>
    ((params: never, options?: { signal?: AbortSignal }) => {
      if (options?.signal) signals.push(options.signal);
      return create(params, options);
    }) as T;
  return {
    models: g.models,
    chat: { completions: { create: keep(g.chat.completions.create) } },
    completions: { create: keep(g.completions.create) },
  };
}

const served = () => peers.reduce((sum, p) => sum + p.status().reduce((s, x) => s + x.tokensServed, 0), 0);

/** A reply without what differs between two runs of one request (id, time, measured speed). */
function comparable(reply: object): object {
  const { id: _id, created: _created, aigrid: _aigrid, ...rest } = reply as Record<string, unknown>;
  return rest;
}

async function post(path: string, body: string | object, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gateway.url}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** The response is an OpenAI error body with these fields (and nothing else). */
async function expectError(res: Response, status: number, fields: { code?: string | null; param?: string | null; message?: string } = {}): Promise<void> {
  expect(res.status, `status of ${res.url}`).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/json');
  expect(res.headers.get('access-control-allow-origin')).toBe('*');
  const body = (await res.json()) as { error: Record<string, unknown> };
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(body.error.message).toEqual(expect.any(String));
  expect(body.error).toMatchObject({ type: status >= 500 ? 'server_error' : 'invalid_request_error', ...fields });
}

describe('OpenAI-compatible gateway', () => {
  it('lists the served models as OpenAI does, with the grid fields kept', async () => {
    const list = await openai.models.list();
    expect(list.data.map((m) => m.id)).toEqual([MODEL]);
    const raw = await fetch(`${gateway.url}/models`);
    expect(raw.headers.get('access-control-allow-origin')).toBe('*');
    expect(await raw.json()).toEqual(await grid.models.list());
    const one = await openai.models.retrieve(MODEL);
    expect(one).toMatchObject({ id: MODEL, object: 'model', owned_by: 'aigrid', health: 'ready', coverage: { layers: 4 } });
  });

  it('streams a chat completion with exactly the SDK text, and usage when asked', async () => {
    const params = { model: MODEL, messages, max_tokens: 24, temperature: 0 };
    const sdk = await grid.chat.completions.create(params);
    const stream = await openai.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(sdk.choices[0]!.message.content);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe(sdk.choices[0]!.finish_reason);
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toEqual(sdk.usage);
    expect(sdk.usage.prompt_tokens).toBeGreaterThan(0);
  });

  it('answers whole chat and text completions as the SDK does', async () => {
    const chat = { model: MODEL, messages, max_tokens: 16, temperature: 0 };
    const viaGateway = await openai.chat.completions.create(chat);
    expect(comparable(viaGateway)).toEqual(comparable(await grid.chat.completions.create(chat)));
    expect(viaGateway.usage!.total_tokens).toBe(viaGateway.usage!.prompt_tokens + viaGateway.usage!.completion_tokens);

    const text = { model: MODEL, prompt: 'once upon a time', max_tokens: 16, temperature: 0 };
    const completion = await openai.completions.create(text);
    expect(comparable(completion)).toEqual(comparable(await grid.completions.create(text)));
    expect(completion.usage!.completion_tokens).toBeGreaterThan(0);
    const pieces: string[] = [];
    for await (const c of await openai.completions.create({ ...text, stream: true })) pieces.push(c.choices[0]?.text ?? '');
    expect(pieces.join('')).toBe(completion.choices[0]!.text);
  });

  it('sends server-sent events in OpenAI wire format', async () => {
    const res = await post('/chat/completions', { model: MODEL, messages, max_tokens: 8, temperature: 0, stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    const body = await res.text();
    expect(body).toMatch(/^(data: [^\n]+\n\n)+$/);
    expect(body.endsWith('\n\ndata: [DONE]\n\n')).toBe(true);
    const events = body.split('\n\n').slice(0, -1).map((e) => e.slice('data: '.length));
    expect(events.filter((e) => e === '[DONE]')).toHaveLength(1);
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as OpenAI.ChatCompletionChunk);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === MODEL)).toBe(true);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).not.toBeNull();
  });

  it('answers bad requests with OpenAI error bodies and fitting statuses', async () => {
    const unknown = await openai.chat.completions.create({ model: 'no-such-model', messages }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect(unknown).toMatchObject({ status: 404, code: 'model_not_found', param: 'model', type: 'invalid_request_error' });
    await expectError(await fetch(`${gateway.url}/models/no-such-model`), 404, { code: 'model_not_found' });

    const empty = await openai.chat.completions.create({ model: MODEL, messages: [] }).catch((e: unknown) => e);
    expect(empty).toBeInstanceOf(OpenAI.BadRequestError);
    expect(empty).toMatchObject({ status: 400, code: 'ERR_INVALID_ARGUMENT', param: 'messages' });
    await expectError(await post('/chat/completions', { model: MODEL }), 400, { code: 'ERR_INVALID_ARGUMENT', param: 'messages' });
    await expectError(await post('/chat/completions', '{"model": "tiny-llama", "messages": [{"role": "us'), 400, { code: 'ERR_MALFORMED_JSON', param: null });
    await expectError(await post('/chat/completions', ''), 400, { code: 'ERR_MALFORMED_JSON' });
    await expectError(await post('/chat/completions', '[]'), 400, { code: 'ERR_INVALID_ARGUMENT' });
    await expectError(await post('/chat/completions', JSON.stringify({ model: MODEL, messages }), { 'Content-Type': 'text/plain' }), 400, { code: 'ERR_INVALID_ARGUMENT' });
    await expectError(await post('/chat/completions', { model: MODEL, messages: 'hi' }), 400, { param: 'messages' });
    await expectError(await post('/chat/completions', { model: 7, messages }), 400, { param: 'model' });
    await expectError(await post('/chat/completions', { model: MODEL, messages, stream: 'yes' }), 400, { param: 'stream' });
    await expectError(await post('/chat/completions', { model: MODEL, messages, temperature: 'hot' }), 400, { param: 'temperature' });
    await expectError(await post('/chat/completions', { model: MODEL, messages, tools: [{ type: 'function' }] }), 400, { param: 'tools' });
    await expectError(await post('/completions', { model: MODEL, prompt: [1, 2, 3] }), 400, { param: 'prompt' });
    await expectError(await post('/completions', { model: MODEL, prompt: 'hi', max_tokens: 100_000 }), 400, { code: 'ERR_INVALID_ARGUMENT' });

    const huge = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(2 << 20) }] });
    await expectError(await post('/chat/completions', huge), 413, { code: 'request_too_large' });
    const chunked = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 3; i++) c.enqueue(new Uint8Array(512 * 1024).fill(0x20));
        c.close();
      },
    });
    const unannounced = await fetch(`${gateway.url}/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: chunked, duplex: 'half' } as RequestInit);
    await expectError(unannounced, 413, { code: 'request_too_large' });

    const wrongMethod = await fetch(`${gateway.url}/chat/completions`);
    expect(wrongMethod.headers.get('allow')).toBe('POST, OPTIONS');
    await expectError(wrongMethod, 405, { code: 'method_not_allowed' });
    await expectError(await fetch(`${gateway.url}/models`, { method: 'DELETE' }), 405);
    await expectError(await fetch(`${gateway.url}/nothing-here`), 404, { code: 'unknown_url' });
    await expectError(await fetch(gateway.url.replace(/\/v1$/, '/elsewhere')), 404, { code: 'unknown_url' });
  });

  it('answers CORS preflights of pages it allows, and refuses foreign pages by default', async () => {
    const preflight = (url: string, origin: string) =>
      fetch(`${url}/chat/completions`, {
        method: 'OPTIONS',
        headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type, x-stainless-os' },
      });
    // A loopback page (e.g. the web app next to it) is allowed by default.
    const local = await preflight(gateway.url, 'http://127.0.0.1:5173');
    expect(local.status).toBe(204);
    expect(local.headers.get('access-control-allow-origin')).toBe('*');
    expect(local.headers.get('access-control-allow-methods')).toContain('POST');
    expect(local.headers.get('access-control-allow-headers')).toBe('authorization, content-type, x-stainless-os');
    // A site the person happens to visit is not: no CORS headers, so it reads nothing.
    const foreign = await preflight(gateway.url, 'http://example.test');
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
    const posted = await post('/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'hi' }] }, { Origin: 'https://evil.example' });
    expect(posted.status).toBe(403);
    expect(posted.headers.get('access-control-allow-origin')).toBeNull();
    expect(((await posted.json()) as { error: { code: string } }).error.code).toBe('ERR_PERMISSION_DENIED');
    // An operator who names the origin (or *) lets it in.
    const open = await startGateway({ grid, port: 0, allowedOrigins: ['http://example.test'] });
    try {
      const named = await preflight(open.url, 'http://example.test');
      expect(named.status).toBe(204);
      expect(named.headers.get('access-control-allow-origin')).toBe('*');
      expect((await preflight(open.url, 'http://other.test')).status).toBe(403);
    } finally {
      await open.close();
    }
  });

  it('stops the work on every peer when the OpenAI client aborts a stream', async () => {
    const params = { model: MODEL, prompt: 'once upon a time', max_tokens: 200, temperature: 0, stop: null };
    let before = served();
    const full = await openai.completions.create(params);
    expect(full.choices[0]!.finish_reason).toBe('length');
    const fullWork = served() - before;

    before = served();
    const stream = await openai.completions.create({ ...params, stream: true });
    const signal = signals.at(-1)!;
    let chunks = 0;
    for await (const _ of stream) {
      if (++chunks === 3) stream.controller.abort(); // chunks the client had already read still come
    }
    expect(chunks).toBeGreaterThanOrEqual(3);
    await waitFor(() => signal.aborted, 5000, 'the gateway aborts the SDK call');
    await waitFor(() => peers.every((p) => p.sessionCount === 0), 5000, 'sessions released on every peer');
    expect(served() - before).toBeLessThan(fullWork / 2);
  });

  it('stops the work when a client leaves before a whole reply is ready', async () => {
    const calls = signals.length;
    const controller = new AbortController();
    const body = JSON.stringify({ model: MODEL, prompt: 'once upon a time', max_tokens: 200, temperature: 0 });
    const left = fetch(`${gateway.url}/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body, signal: controller.signal })
      .then(() => 'answered', () => 'aborted');
    await waitFor(() => signals.length > calls, 5000, 'the request reached the SDK');
    controller.abort();
    expect(await left).toBe('aborted');
    await waitFor(() => signals.at(-1)!.aborted, 5000, 'the gateway aborts the SDK call');
    await waitFor(() => peers.every((p) => p.sessionCount === 0), 5000, 'sessions released on every peer');
  });

  it('answers 503 when no peers serve the model, mounted on a signaling server', async () => {
    // A network where the model is asked for but no peer offers memory: no route to generate on.
    const lonely = await connect({ signal: net.server.wsUrl, network: 'gateway-empty' });
    const server = await startSignalingServer({ mount: createGatewayHandler(lonely) });
    try {
      await lonely.serve({ source: `${net.files.url}/${MODEL}`, modelId: MODEL, replication: 1 });
      await waitFor(async () => (await lonely.models.list()).data.length === 1, 5000, 'the model is listed');
      const api = `${server.httpUrl}/v1`;
      const models = (await (await fetch(`${api}/models`)).json()) as { data: { id: string; health: string }[] };
      expect(models.data).toMatchObject([{ id: MODEL, health: 'unavailable' }]);
      const request = (stream: boolean) =>
        fetch(`${api}/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: MODEL, messages, max_tokens: 8, stream }) });
      await expectError(await request(false), 503, { code: 'ERR_NO_ROUTE' });
      const streamed = await request(true);
      expect(streamed.headers.get('retry-after')).toBe('5');
      await expectError(streamed, 503, { code: 'ERR_NO_ROUTE' });
      // What the gateway does not take stays the server's.
      expect(await (await fetch(`${server.httpUrl}/healthz`)).json()).toMatchObject({ ok: true });
    } finally {
      lonely.close();
      await server.close();
    }
  });

  it('never stalls or crashes on slow, vanishing or garbled clients', async () => {
    const strict = await startGateway({ grid, port: 0, bodyTimeoutMs: 300 });
    try {
      const port = Number(new URL(strict.url).port);
      // Announces 100 bytes, sends 10, then nothing: answered 408 once the body time is up.
      const slow = await rawRequest(port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":');
      expect(slow).toMatch(/^HTTP\/1\.1 408 /);
      expect(slow).toContain('"code":"request_timeout"');
      // Leaves halfway through its body, and one that sends garbage for a request line.
      const gone = tcpConnect(port, '127.0.0.1');
      gone.on('error', () => {});
      gone.end('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"pro');
      const garbled = await rawRequest(port, '\x00\x01 nonsense \r\n\r\n');
      expect(garbled).toMatch(/^HTTP\/1\.1 400 |^$/);
      const models = await new OpenAI({ baseURL: strict.url, apiKey: 'unused', maxRetries: 0 }).models.list();
      expect(models.data.map((m) => m.id)).toEqual([MODEL]);
    } finally {
      await strict.close();
    }
  });

  it('asks for the API key when started with one', async () => {
    const locked = await startGateway({ grid, port: 0, apiKey: 'sekret' });
    try {
      const wrong = await new OpenAI({ baseURL: locked.url, apiKey: 'guess', maxRetries: 0 }).models.list().catch((e: unknown) => e);
      expect(wrong).toBeInstanceOf(OpenAI.AuthenticationError);
      expect(wrong).toMatchObject({ status: 401, code: 'invalid_api_key' });
      const none = await fetch(`${locked.url}/models`);
      expect(none.headers.get('www-authenticate')).toBe('Bearer');
      await expectError(none, 401, { code: 'invalid_api_key' });
      expect((await fetch(`${locked.url}/models`, { method: 'OPTIONS' })).status).toBe(204);
      const right = await new OpenAI({ baseURL: locked.url, apiKey: 'sekret', maxRetries: 0 }).models.list();
      expect(right.data.map((m) => m.id)).toEqual([MODEL]);
    } finally {
      await locked.close();
    }
  });

  it('runs as `aigrid gateway` and prints its base URL', async () => {
    const help = await promisify(execFile)(process.execPath, [BIN, 'gateway', '--help']);
    expect(help.stdout).toContain('Usage: aigrid gateway');
    expect(help.stdout).toContain('--api-key K');
    for (const flag of ['--max-concurrent N', '--max-queue N', '--request-timeout S', '--shutdown-grace S']) expect(help.stdout).toContain(flag);
    const child = spawn(process.execPath, [BIN, 'gateway', '--signal', net.server.wsUrl, '--network', NETWORK, '--port', '0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, AIGRID_STATE_DIR: mkdtempSync(join(tmpdir(), 'aigrid-state-')) },
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const found = /OpenAI-compatible API at (http:\/\/127\.0\.0\.1:\d+\/v1)\n/.exec(out);
          if (found) resolve(found[1]!);
        });
        child.once('exit', (code) => reject(new Error(`aigrid gateway exited (${code}): ${out}`)));
      });
      const list = await new OpenAI({ baseURL: url, apiKey: 'unused', maxRetries: 0 }).models.list();
      expect(list.data.map((m) => m.id)).toEqual([MODEL]);
    } finally {
      child.kill('SIGTERM');
    }
  });

  it("runs the README's OpenAI client snippet", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [SNIPPET, gateway.url]);
    const expected = await grid.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me a story about a brave fox.' }],
      max_tokens: 48,
      temperature: 0,
    });
    expect(expected.choices[0]!.message.content.length).toBeGreaterThan(0);
    expect(stdout).toBe(`${expected.choices[0]!.message.content}\n`);
  });
});

describe('gateway failures that a healthy grid does not produce', () => {
  /** A grid whose streams give two chunks and then fail with `err`, and whose lists throw `err`. */
  function failingGrid(err: Error): GatewayGrid {
    const chunk = (content: string) => ({ id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 0, model: MODEL, system_fingerprint: 'aigrid', choices: [{ index: 0, delta: { content }, logprobs: null, finish_reason: null }] });
    async function* chunks() {
      yield chunk('once');
      yield chunk(' upon');
      throw err;
    }
    const stream = () => Object.assign(chunks(), { controller: new AbortController() });
    return {
      models: { list: () => Promise.reject(err), retrieve: () => Promise.reject(err) },
      chat: { completions: { create: async () => stream() } },
      completions: { create: async () => stream() },
    } as unknown as GatewayGrid;
  }

  it('ends a stream that fails midway with an error event, which the OpenAI client throws', async () => {
    const broken = await startGateway({ grid: failingGrid(new AigridError('ERR_PEER_TIMEOUT', 'peer p1 did not answer')), port: 0 });
    try {
      const res = await fetch(`${broken.url}/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: MODEL, messages, stream: true }) });
      expect(res.status).toBe(200);
      const events = (await res.text()).split('\n\n');
      expect(events.at(-1)).toBe('');
      expect(events).toHaveLength(4);
      expect(events.includes('data: [DONE]')).toBe(false);
      const last = JSON.parse(events.at(-2)!.slice('data: '.length)) as { error: Record<string, unknown> };
      expect(last.error).toMatchObject({ type: 'server_error', code: 'ERR_PEER_TIMEOUT', param: null, message: expect.stringContaining('peer p1 did not answer') });

      const client = new OpenAI({ baseURL: broken.url, apiKey: 'unused', maxRetries: 0 });
      const texts: string[] = [];
      const failed = (async () => {
        for await (const c of await client.chat.completions.create({ model: MODEL, messages, stream: true })) texts.push(c.choices[0]!.delta.content ?? '');
      })().catch((e: unknown) => e);
      expect(await failed).toMatchObject({ code: 'ERR_PEER_TIMEOUT' });
      expect(texts.join('')).toBe('once upon');
    } finally {
      await broken.close();
    }
  });

  it('drops a stream whose client reads nothing, and stops its generation', async () => {
    let stopped = false;
    const big = { id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 0, model: MODEL, system_fingerprint: 'aigrid', choices: [{ index: 0, delta: { content: 'x'.repeat(64 * 1024) }, logprobs: null, finish_reason: null }] };
    async function* endless() {
      try {
        for (;;) yield await Promise.resolve(big);
      } finally {
        stopped = true;
      }
    }
    const create = async () => Object.assign(endless(), { controller: new AbortController() });
    const endlessGrid = { models: grid.models, chat: { completions: { create } }, completions: { create } } as unknown as GatewayGrid;
    const stuck = await startGateway({ grid: endlessGrid, port: 0, writeTimeoutMs: 300 });
    try {
      const body = JSON.stringify({ model: MODEL, messages, stream: true });
      const socket = tcpConnect(Number(new URL(stuck.url).port), '127.0.0.1');
      socket.on('error', () => {});
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      socket.pause(); // and never read
      await waitFor(() => stopped, 10_000, 'the generation stopped');
      socket.resume(); // drain what was buffered, so the close the server sent arrives
      await closed;
    } finally {
      await stuck.close();
    }
  });

  it('answers 500 without details for its own failures, and tells its log', async () => {
    const lines: string[] = [];
    const broken = await startGateway({ grid: failingGrid(new TypeError('secret internals')), port: 0, log: (l) => lines.push(l) });
    try {
      const res = await fetch(`${broken.url}/models`);
      await expectError(res, 500, { code: null, message: 'internal error in the gateway' });
      expect(lines.join('\n')).toContain('secret internals');
    } finally {
      await broken.close();
    }
  });
});

/** Writes raw bytes and returns everything the server sends back until it closes the connection. */
function rawRequest(port: number, data: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, '127.0.0.1');
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString()));
    socket.on('error', () => {});
    socket.on('close', () => resolve(got));
    socket.write(data);
  });
}
