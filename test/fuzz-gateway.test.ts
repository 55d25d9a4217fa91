// Fuzz of the gateway's HTTP API: the real gateway (startGateway, as `aigrid gateway` runs it) over
// a real Grid connected to a real signaling server on loopback where no model is served, driven
// by raw TCP clients (keep-alive) writing mutated HTTP requests: methods, paths, headers,
// Content-Length lies, chunked bodies, and mutated JSON chat/completions bodies. Every request
// must get one well-formed HTTP response (an error status with an OpenAI-shaped body when the
// gateway answers bad input; Node's own bare 400 for what its HTTP parser refuses) or have its
// connection closed, within a bound; never a 500, a crash or a hang. Seeded: FUZZ_SEED=<seed>
// replays a run.
import { connect as tcpConnect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../client/gateway/index.ts';
import { connect, type Grid } from '../client/sdk/node.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { caseRandom, fuzzSeed, Mutator, settledHeap, show } from './helpers/mutate.ts';

const SEED = fuzzSeed(0x6a7e3);
const CASES = 10_500;
const WORKERS = 12;
const BODY_TIMEOUT_MS = 400;
/** A response must start within this (body timeout included) or the gateway hangs. */
const ANSWER_MS = 5_000;
const HEAP_MARGIN = 48 * 2 ** 20;

let signaling: SignalingServer;
let grid: Grid;
let gateway: Gateway;
const internal: string[] = [];

beforeAll(async () => {
  signaling = await startSignalingServer({ heartbeatMs: 60_000 });
  grid = await connect({ signal: signaling.wsUrl, network: 'fuzz-gateway', verify: false });
  gateway = await startGateway({ grid, port: 0, bodyTimeoutMs: BODY_TIMEOUT_MS, log: (line) => internal.length < 100 && internal.push(line) });
});

afterAll(async () => {
  await gateway?.close(0);
  grid?.close();
  await signaling?.close();
});

interface Response {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** A keep-alive connection that writes raw bytes and parses HTTP/1.1 responses off the wire. */
class RawConnection {
  readonly socket: Socket;
  private buffer = Buffer.alloc(0);
  closed = false;
  private wake: (() => void) | null = null;

  constructor(port: number) {
    this.socket = tcpConnect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, d]);
      this.wake?.();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
  }

  private async more(deadline: number): Promise<void> {
    if (this.closed) throw new Closed();
    const left = deadline - performance.now();
    if (left <= 0) throw new Error('no complete response in time');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  /** The next response (interim 1xx skipped); Closed when the connection ends before one starts. */
  async response(head: boolean, ms: number): Promise<Response> {
    const deadline = performance.now() + ms;
    for (;;) {
      let end = this.buffer.indexOf('\r\n\r\n');
      while (end < 0) {
        if (this.closed && this.buffer.length > 0) throw new Error(`connection closed inside a response head: ${JSON.stringify(this.buffer.toString('latin1').slice(0, 200))}`);
        await this.more(deadline);
        end = this.buffer.indexOf('\r\n\r\n');
      }
      const lines = this.buffer.subarray(0, end).toString('latin1').split('\r\n');
      this.buffer = this.buffer.subarray(end + 4);
      const statusLine = /^HTTP\/1\.1 (\d{3}) [^\r\n]*$/.exec(lines[0]!);
      if (!statusLine) throw new Error(`malformed status line ${JSON.stringify(lines[0])}`);
      const status = Number(statusLine[1]);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon <= 0) throw new Error(`malformed header line ${JSON.stringify(line)}`);
        const name = line.slice(0, colon).toLowerCase();
        if (name === 'content-length' && headers[name] !== undefined) throw new Error('two Content-Length headers');
        headers[name] = line.slice(colon + 1).trim();
      }
      if (status >= 100 && status < 200) continue;
      let body: Buffer = Buffer.alloc(0);
      if (!head && status !== 204 && status !== 304) {
        if (headers['transfer-encoding'] === 'chunked') body = await this.chunked(deadline);
        else if (headers['content-length'] !== undefined) {
          const n = Number(headers['content-length']);
          if (!Number.isInteger(n) || n < 0) throw new Error(`bad Content-Length ${headers['content-length']}`);
          while (this.buffer.length < n) {
            if (this.closed) throw new Error(`connection closed after ${this.buffer.length} of ${n} body bytes`);
            await this.more(deadline);
          }
          body = this.buffer.subarray(0, n);
          this.buffer = this.buffer.subarray(n);
        } else {
          // Delimited by the close.
          while (!this.closed) await this.more(deadline).catch((err: unknown) => {
            if (!(err instanceof Closed)) throw err;
          });
          body = this.buffer;
          this.buffer = Buffer.alloc(0);
        }
      }
      return { status, headers, body };
    }
  }

  private async chunked(deadline: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      let eol = this.buffer.indexOf('\r\n');
      while (eol < 0) {
        await this.more(deadline);
        eol = this.buffer.indexOf('\r\n');
      }
      const size = parseInt(this.buffer.subarray(0, eol).toString('latin1'), 16);
      if (!Number.isInteger(size) || size < 0) throw new Error('bad chunk size');
      while (this.buffer.length < eol + 2 + size + 2) await this.more(deadline);
      parts.push(this.buffer.subarray(eol + 2, eol + 2 + size));
      this.buffer = this.buffer.subarray(eol + 2 + size + 2);
      if (size === 0) return Buffer.concat(parts);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

class Closed extends Error {}

const chatBody = { model: 'fuzz-model', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello there' }], max_tokens: 8, temperature: 0.5, top_p: 0.9, stream: false, stop: ['\n'], seed: 3, user: 'u' };
const textBody = { model: 'fuzz-model', prompt: 'once upon a time', max_tokens: 4, stream: true, stream_options: { include_usage: true }, n: 1, top_k: 5 };

interface Request {
  bytes: Buffer;
  head: boolean;
  /** The request cannot leave the connection usable after it (lies, broken framing). */
  dirty: boolean;
  /** A clean, well-formed request that must get an answer (not only a close). */
  mustAnswer: boolean;
  /** Whether the gateway itself (not Node's parser) answers, so an error must be OpenAI-shaped. */
  byGateway: boolean;
}

function request(m: Mutator, port: number): Request {
  const route = m.pick(['/v1/chat/completions', '/v1/chat/completions', '/v1/completions', '/v1/completions', '/v1/models', '/v1/models/fuzz-model', '/v1', '/', '/v1/embeddings']);
  const posting = route.includes('completions');
  let method = m.chance(0.85) ? (posting ? 'POST' : 'GET') : m.pick(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'PATCH', 'post', 'TRACE', 'FOO', 'PROPFIND']);
  let path = route;
  let dirty = false;
  let wellFormed = true;
  if (m.chance(0.15)) {
    path = m.pick([
      `${route}?x=1&y=%ZZ`,
      `${route}/`,
      `${route}//`,
      `/v1/models/${encodeURIComponent('org/name')}`,
      '/v1/models/%E0%A4%A',
      '/v1/models/%2e%2e%2f%2e%2e',
      `/v1/${'a'.repeat(m.pick([300, 9000]))}`,
      '/v1/models/\u00e9\u00e8',
      '*',
      'http://127.0.0.1/v1/models',
      '/v1/chat/completions#frag',
    ]);
  }
  const headers: [string, string][] = [['Host', `127.0.0.1:${port}`]];
  let body: Buffer = Buffer.alloc(0);
  if (posting || m.chance(0.1)) {
    const base = route.includes('chat') ? chatBody : textBody;
    const text = m.chance(0.12) ? JSON.stringify(base) : m.json(base);
    body = typeof text === 'string' ? Buffer.from(text) : Buffer.from(text);
  }
  const contentType = m.chance(0.85) ? 'application/json' : m.pick(['text/plain', 'application/json; charset=latin1', 'application/json; charset="utf-8"', 'application/vnd.api+json', 'application/jsonx', '', 'multipart/form-data; boundary=x']);
  if (contentType !== '') headers.push(['Content-Type', contentType]);
  let chunked = false;
  const framing = m.int(30);
  if (framing === 0) {
    // A length above what is sent: the gateway waits for the rest, then answers 408 (or answers at once when it reads no body).
    headers.push(['Content-Length', String(body.length + 1 + m.int(1000))]);
    dirty = true;
  } else if (framing === 1 && body.length > 0) {
    // A length below what is sent: the rest reads as the next request.
    headers.push(['Content-Length', String(m.int(body.length))]);
    dirty = true;
  } else if (framing === 2) {
    headers.push(['Content-Length', m.pick(['abc', '-1', '1e3', '99999999999999999999', ' 5', '0x10'])]);
    dirty = true;
    wellFormed = false;
  } else if (framing === 3) {
    headers.push(['Content-Length', String(body.length)], ['Content-Length', String(body.length + 1)]);
    dirty = true;
    wellFormed = false;
  } else if (framing === 4) {
    chunked = true;
    headers.push(['Transfer-Encoding', 'chunked']);
  } else if (framing === 5) {
    headers.push(['Transfer-Encoding', 'chunked'], ['Content-Length', String(body.length)]);
    chunked = true;
    dirty = true;
    wellFormed = false;
  } else if (body.length > 0 || method === 'POST') {
    headers.push(['Content-Length', String(body.length)]);
  }
  if (m.chance(0.05)) headers.push(['Origin', m.pick(['http://evil.example', 'http://localhost:3000', 'chrome-extension://abc', 'null', 'http://127.0.0.1.evil.example'])]);
  if (m.chance(0.05)) headers.push(['Authorization', m.pick(['Bearer x', 'Bearer ', 'Basic abc', 'x'.repeat(3000)])]);
  if (m.chance(0.03)) headers.push(['Expect', '100-continue']);
  if (m.chance(0.03)) headers.push(['Access-Control-Request-Headers', m.pick(['x-a, x-b', 'y'.repeat(5000)])]);
  if (m.chance(0.01)) {
    headers.push(['X-Big', 'z'.repeat(20_000)]); // past Node's header limit: 431
    dirty = true;
    wellFormed = false;
  }
  if (m.chance(0.02)) {
    headers.push(['Bad Header', 'x']);
    dirty = true;
    wellFormed = false;
  }
  if (m.chance(0.02)) {
    method = m.pick(['G\u0000T', 'GET /x', '']);
    dirty = true;
    wellFormed = false;
  }
  if (method === 'post' || method === 'FOO') {
    // Methods Node's HTTP parser does not know (they are case-sensitive): a bare 400 and a close.
    dirty = true;
    wellFormed = false;
  }
  if (/[^\x21-\x7e]/.test(path)) {
    dirty = true;
    wellFormed = false;
  }
  let payload = body;
  if (chunked) {
    const parts: Buffer[] = [];
    for (let at = 0; at < body.length; ) {
      const n = 1 + m.int(Math.max(1, body.length - at));
      parts.push(Buffer.from(`${n.toString(16)}\r\n`), body.subarray(at, at + n), Buffer.from('\r\n'));
      at += n;
    }
    parts.push(Buffer.from(m.chance(0.1) ? 'zz\r\n\r\n' : '0\r\n\r\n'));
    payload = Buffer.concat(parts);
    if (payload.includes('zz')) {
      dirty = true;
      wellFormed = false;
    }
  }
  const head = `${method} ${path} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
  const byGateway = wellFormed && (path === '/v1' || path.startsWith('/v1/') || path.startsWith('/'));
  return { bytes: Buffer.concat([Buffer.from(head, 'latin1'), payload]), head: method === 'HEAD', dirty, mustAnswer: !dirty && wellFormed, byGateway };
}

/** What an error body of the gateway must be: OpenAI's {"error":{message,type,param,code}}. */
function openAiError(body: Buffer): string | null {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return 'not JSON';
  }
  const e = (value as { error?: Record<string, unknown> })?.error;
  if (!e || typeof e !== 'object') return 'no error object';
  if (typeof e.message !== 'string' || typeof e.type !== 'string') return 'message or type is not a string';
  if (!('param' in e) || !('code' in e)) return 'param or code missing';
  if (e.param !== null && typeof e.param !== 'string') return 'param is neither null nor a string';
  if (e.code !== null && typeof e.code !== 'string') return 'code is neither null nor a string';
  return null;
}

describe('fuzz: gateway HTTP API', () => {
  it('regression: a sampling field nested 100,000 arrays deep is a 400 naming the field, not a 500', async () => {
    // String() of such a value recursed past the stack in the SDK's sampling checks (found by this fuzz, seed 436195 case 449).
    for (const [path, field] of [['/completions', 'max_tokens'], ['/chat/completions', 'temperature'], ['/completions', 'top_k'], ['/chat/completions', 'seed']] as const) {
      const base = path === '/completions' ? { model: 'fuzz-model', prompt: 'x' } : { model: 'fuzz-model', messages: [{ role: 'user', content: 'x' }] };
      const body = `${JSON.stringify(base).slice(0, -1)},"${field}":${'['.repeat(100_000)}1${']'.repeat(100_000)}}`;
      const res = await fetch(`${gateway.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
      expect(res.status, field).toBe(400);
      expect(((await res.json()) as { error: { param: string } }).error.param).toBe(field);
    }
  });

  it(`answers ${CASES} mutated HTTP requests with well-formed responses or a close, never a 500 or a hang`, async () => {
    const started = performance.now();
    const heapBefore = await settledHeap();
    const statuses: Record<number, number> = {};
    const tally = { sent: 0, answered: 0, closedWithoutAnswer: 0, connections: 0, bareNodeErrors: 0 };
    let nextCase = 0;

    const worker = async () => {
      let conn: RawConnection | null = null;
      while (nextCase < CASES) {
        const index = nextCase++;
        const m = new Mutator(caseRandom(SEED, index));
        const req = request(m, gateway.port);
        const fail = (why: string, res?: Response): never => {
          throw new Error(
            `case ${index} (FUZZ_SEED=${SEED}): ${why}\n  mutations: ${m.steps.join('; ')}\n  request: ${show(req.bytes.toString('latin1'), 1200)}` +
              (res ? `\n  response: ${res.status} ${JSON.stringify(res.headers)} ${res.body.toString('utf8').slice(0, 300)}` : ''),
          );
        };
        if (!conn || conn.closed || req.dirty) {
          conn?.close();
          conn = new RawConnection(gateway.port);
          tally.connections++;
          await conn.ready().catch((err: unknown) => fail(`cannot connect: the gateway is gone (${String(err)})`));
        }
        conn.socket.write(req.bytes);
        tally.sent++;
        let res!: Response;
        try {
          res = await conn.response(req.head, ANSWER_MS);
        } catch (err) {
          if (err instanceof Closed) {
            if (req.mustAnswer) fail('the connection closed without an answer to a well-formed request');
            tally.closedWithoutAnswer++;
            continue;
          }
          fail(String((err as Error).message));
        }
        tally.answered++;
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status >= 500 && res.status !== 503) fail(`a ${res.status}: the gateway's own failure`, res);
        if (res.status >= 400) {
          const bare = res.headers['content-type'] === undefined && res.body.length === 0;
          if (bare) {
            // Node's HTTP parser refused the request before the gateway saw it.
            if (req.byGateway && req.mustAnswer) fail('a bare error to a well-formed request', res);
            tally.bareNodeErrors++;
          } else if (!req.head) {
            const why = openAiError(res.body);
            if (why) fail(`error body is not OpenAI's: ${why}`, res);
          }
        } else if (req.mustAnswer && req.byGateway && res.status === 200 && !req.head) {
          // Only the model list answers 200 here: no model is served.
          const list = JSON.parse(res.body.toString('utf8')) as { object?: string };
          if (list.object !== 'list') fail('a 200 that is not the model list', res);
        }
        if (req.dirty || res.headers.connection === 'close') {
          conn.close();
          conn = null;
        }
      }
      conn?.close();
    };
    await Promise.all(Array.from({ length: WORKERS }, worker));

    // Still answering: the model list, and a chat for an unknown model is a 404 in OpenAI's shape.
    const list = await fetch(`${gateway.url}/models`);
    expect(list.status).toBe(200);
    expect(await list.json()).toEqual({ object: 'list', data: [] });
    const chat = await fetch(`${gateway.url}/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(chatBody) });
    expect(chat.status).toBe(404);
    expect(((await chat.json()) as { error: { code: string } }).error.code).toBe('model_not_found');

    const heapAfter = await settledHeap();
    console.log(
      `gateway: ${tally.sent} requests in ${((performance.now() - started) / 1000).toFixed(1)} s on ${tally.connections} connections (seed ${SEED}): ` +
        `${tally.answered} answered (${tally.bareNodeErrors} by Node's parser), ${tally.closedWithoutAnswer} closed without an answer; ` +
        `statuses ${JSON.stringify(statuses)}; heap ${((heapAfter - heapBefore) / 2 ** 20).toFixed(1)} MiB after`,
    );
    expect(internal, 'the gateway logged failures of its own').toEqual([]);
    expect(tally.sent).toBe(CASES);
    expect(tally.answered + tally.closedWithoutAnswer).toBe(CASES);
    expect(tally.answered).toBeGreaterThan(CASES * 0.9);
    // The fuzz reaches each kind of answer: bad input, unknown routes and models, methods, origins, lies.
    for (const status of [200, 204, 400, 403, 404, 405, 408]) expect(statuses[status] ?? 0, `status ${status}`).toBeGreaterThan(0);
    expect(heapAfter - heapBefore).toBeLessThan(HEAP_MARGIN);
  });
});
