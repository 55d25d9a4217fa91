// Fuzz of the signaling server: the real server on 127.0.0.1 and real `ws` clients sending mutated
// versions of every client message (a hello signed over the socket's own challenge, signal, update,
// serve, status, route, models, ping, accuse, ...), before and after a valid hello. Each mutated
// frame is followed by a marker frame (an unknown type, answered with an error naming it), so the
// answers between two markers are the mutated frame's. A frame the protocol's own parser refuses
// must be answered with that error code (or, for frames that open as an accusation, may be
// dropped by its rate); the rest are answered or dropped, and both are counted. Meanwhile a
// well-behaved peer pings and must hear each pong within a bound; at the end the server still
// works and its heap is back within a margin. Seeded: FUZZ_SEED=<seed> replays a run.
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HARD_SIGNAL_FRAME_BYTES,
  MAX_ACCUSE_FRAME_BYTES,
  MAX_SIGNAL_FRAME_BYTES,
  opensAsAccusation,
  parseClientMessage,
  parseServerMessage,
  signedHello,
  signLeaf,
  toBase64Url,
  type ServerMessage,
} from '../protocol/index.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { idOf, testIdentity } from './helpers/identities.ts';
import { caseRandom, fuzzSeed, Mutator, settledHeap, show } from './helpers/mutate.ts';
import { CAPS, TestClient } from './helpers/ws-client.ts';

const SEED = fuzzSeed(0x51c4a1);
/** Mutated frames in all, half before a hello and half after, over a few sockets at once. */
const CASES = 30_000;
const SOCKETS = 4;
const BATCH = 50;
/** A batch's last marker must come back within this (a hang otherwise). */
const BATCH_MS = 15_000;
/** Each of the good peer's pings must be answered within this, throughout. */
const PONG_MS = 2_000;
/** The server's heap after the fuzz, against before it (same process: the test's share is small). */
const HEAP_MARGIN = 48 * 2 ** 20;

const NETWORK = 'fuzz';
const watcherId = idOf('fuzz-watcher');
const digest = (c: string) => c.repeat(43);

/** Valid messages of every client type; `hello` is made per socket (it signs the socket's challenge). */
async function baseMessages(): Promise<Record<string, object>> {
  const leafOf = async (name: string) =>
    signLeaf(testIdentity(name), { network: NETWORK, modelId: 'fuzz-model', sessionId: '0123456789abcdef', client: watcherId, start: 0, end: 2, requestId: 5 }, new Uint8Array(32), new Uint8Array(32));
  const segment = async (name: string) => ({
    hops: [{ peerId: idOf(name), start: 0, end: 2 }],
    ticket: { expires: Date.now() + 60_000, signature: 'S'.repeat(86) },
    first: await leafOf(name),
    last: await leafOf(name),
    output: { shape: 'AAAAAAAAAAAA', valuesRoot: digest('A'), chunks: 1, picks: [{ index: 0, bytes: toBase64Url(new Uint8Array(64)), path: [] }] },
  });
  const spec = { modelId: 'fuzz-model', source: 'https://example.invalid/fuzz-model', numLayers: 4, hiddenSize: 64, layerBytes: 1 << 20, weightDtype: 'f32', replication: 1 };
  return {
    update: { type: 'update', capabilities: CAPS },
    offer: { type: 'signal', to: watcherId, data: { type: 'offer', sdp: 'v=0 fuzz offer' } },
    answer: { type: 'signal', to: watcherId, data: { type: 'answer', sdp: 'v=0 fuzz answer' } },
    candidate: { type: 'signal', to: watcherId, data: { type: 'candidate', candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0 } } },
    renegotiate: { type: 'signal', to: idOf('nobody'), data: { type: 'renegotiate', renegotiate: true } },
    decline: { type: 'decline', to: watcherId, reason: 'busy' },
    ping: { type: 'ping', id: 7 },
    serve: { type: 'serve', model: spec },
    status: { type: 'status', modelId: 'fuzz-model', start: 0, end: 4, state: 'ready', sessions: 0, tokensServed: 0 },
    route: { type: 'route', requestId: 3, modelId: 'fuzz-model', start: 0, end: 4, exclude: [idOf('nobody')], latencyMs: { [watcherId]: 3 }, around: [{ peerId: watcherId, start: 0, end: 4 }], replace: watcherId },
    models: { type: 'models' },
    withdraw: { type: 'withdraw', modelId: 'fuzz-model' },
    policy: { type: 'policy', servers: 'anyone', sources: ['https://example.invalid/'] },
    verdict: { type: 'verdict', modelId: 'fuzz-model', verdicts: [{ peerId: watcherId, result: 'verified' }] },
    accuse: { type: 'accuse', id: 1, modelId: 'fuzz-model', requestId: 5, segments: await Promise.all(['fuzz-a', 'fuzz-b', 'fuzz-c'].map(segment)) },
  };
}

interface Tally {
  sent: number;
  /** Frames answered by at least one message. */
  answered: number;
  /** Frames with no answer (rate-limited types, messages that answer nothing, like verdict). */
  dropped: number;
  /** Frames after which the server closed the socket, as it should (a refused identity, above 1 MiB). */
  closedBy: number;
  /** Frames sent after those, on a socket the server was closing: never read. */
  afterClose: number;
  /** Refused by the parser and answered with its code. */
  refusedAsExpected: number;
  welcomes: number;
  byCode: Record<string, number>;
}

/** One fuzzing socket: frames and markers out, answers collected per marker window. */
class FuzzSocket {
  readonly ws: WebSocket;
  /** Answers since the last marker came back. */
  window: ServerMessage[] = [];
  readonly windows = new Map<number, ServerMessage[]>();
  readonly invalid: string[] = [];
  nonce: Promise<string>;
  joined = false;
  closeCode: number | null = null;
  readonly closed: Promise<number>;
  private waiters = new Map<number, () => void>();

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('error', () => {});
    let gotNonce!: (n: string) => void;
    this.nonce = new Promise((r) => (gotNonce = r));
    this.closed = new Promise((r) =>
      this.ws.on('close', (code) => {
        this.closeCode = code;
        for (const w of this.waiters.values()) w();
        r(code);
      }),
    );
    this.ws.on('message', (data) => {
      const text = String(data);
      const parsed = parseServerMessage(text);
      if (!parsed.ok) return void this.invalid.push(text.slice(0, 300));
      const msg = parsed.message;
      if (msg.type === 'challenge') return gotNonce(msg.nonce);
      const mark = msg.type === 'error' && msg.code === 'ERR_UNKNOWN_TYPE' ? /"mark-(-?\d+)"/.exec(msg.message) : null;
      if (mark) {
        const n = Number(mark[1]);
        this.windows.set(n, this.window);
        this.window = [];
        this.waiters.get(n)?.();
        this.waiters.delete(n);
      } else this.window.push(msg);
    });
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(frame: string | Uint8Array): void {
    if (this.open) this.ws.send(frame);
  }

  mark(n: number): void {
    this.send(`{"type":"mark-${n}"}`);
  }

  /** Resolves when marker n is back, or the socket closed; rejects after ms (a hang). */
  until(n: number, ms: number): Promise<void> {
    if (this.windows.has(n) || this.closeCode !== null) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`marker ${n} not answered within ${ms} ms`)), ms);
      this.waiters.set(n, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  close(): Promise<number> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
    return this.closed;
  }
}

let server: SignalingServer;
let watcher: TestClient;
const logLines: string[] = [];
let bases: Record<string, object>;

beforeAll(async () => {
  server = await startSignalingServer({
    // High enough that the per-connection rate never drops a fuzz frame (the per-type rates still apply).
    messagesPerSecond: 1_000_000,
    heartbeatMs: 60_000,
    helloTimeoutMs: 120_000,
    log: (line) => {
      if (logLines.length < 2000) logLines.push(line);
    },
  });
  watcher = await TestClient.join(server.wsUrl, 'fuzz-watcher', NETWORK);
  bases = await baseMessages();
});

afterAll(async () => {
  await watcher?.close();
  await server?.close();
});

describe('fuzz: signaling server', () => {
  it(`answers or drops ${CASES} mutated frames before and after hello, keeps a good peer's pongs within ${PONG_MS} ms, and its heap bounded`, async () => {
    const started = performance.now();
    const heapBefore = await settledHeap();

    // The good peer: a ping every 50 ms; the slowest pong is the bound checked.
    let pingId = 1_000_000;
    let slowest = 0;
    let pongs = 0;
    let stop = false;
    const pinger = (async () => {
      while (!stop) {
        const id = ++pingId;
        const sentAt = performance.now();
        watcher.send({ type: 'ping', id });
        await watcher.next('pong', (m) => m.id === id, PONG_MS);
        slowest = Math.max(slowest, performance.now() - sentAt);
        pongs++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    const tally: Tally = { sent: 0, answered: 0, dropped: 0, closedBy: 0, afterClose: 0, refusedAsExpected: 0, welcomes: 0, byCode: {} };
    const invalid: string[] = [];
    let socketsOpened = 0;
    const names = Object.keys(bases);

    /** One worker: its share of the cases, on sockets it reopens when one closes or (before hello) joins. */
    const worker = async (w: number) => {
      const perWorker = CASES / SOCKETS;
      const first = w * perWorker;
      // The first half of each worker's cases go before a hello, the second half after one.
      let sock: FuzzSocket | null = null;
      let phase: 'pre' | 'post' = 'pre';
      const open = async (): Promise<FuzzSocket> => {
        const s = new FuzzSocket(server.wsUrl);
        socketsOpened++;
        await s.opened();
        const nonce = await s.nonce;
        if (phase === 'post') {
          s.send(JSON.stringify(await signedHello(testIdentity(`fuzz-w${w}-${socketsOpened}`), nonce, NETWORK, CAPS)));
          s.mark(-1);
          await s.until(-1, BATCH_MS);
          if (!s.windows.get(-1)?.some((m) => m.type === 'welcome')) throw new Error(`worker ${w}: no welcome: ${JSON.stringify(s.windows.get(-1))}`);
          s.joined = true;
        }
        return s;
      };
      for (let at = first; at < first + perWorker; at += BATCH) {
        const nextPhase = at - first < perWorker / 2 ? 'pre' : 'post';
        if (!sock || sock.closeCode !== null || !sock.open || nextPhase !== phase || (phase === 'pre' && sock.joined)) {
          if (sock) {
            invalid.push(...sock.invalid);
            await sock.close();
          }
          phase = nextPhase;
          sock = await open();
        }
        const s = sock;
        const nonce = await s.nonce;
        const helloBase = await signedHello(testIdentity(`fuzz-h${w}-${socketsOpened}`), nonce, NETWORK, CAPS);
        const cases: { index: number; m: Mutator; frame: string | Uint8Array; base: string }[] = [];
        for (let i = at; i < at + BATCH; i++) {
          const m = new Mutator(caseRandom(SEED, i));
          const base = m.chance(0.12) ? 'hello' : m.pick(names);
          const value = base === 'hello' ? helloBase : bases[base]!;
          // Now and then the valid message itself, so the paths past the checks run too.
          const frame = m.chance(0.08) ? JSON.stringify(value) : m.json(value);
          cases.push({ index: i, m, frame, base });
          s.send(frame);
          s.mark(i);
        }
        tally.sent += cases.length;
        await s.until(at + BATCH - 1, BATCH_MS).catch((err: unknown) => {
          throw new Error(`worker ${w}, cases ${at}..${at + BATCH - 1} (FUZZ_SEED=${SEED}): ${(err as Error).message}; the server hangs`);
        });
        // Walk the windows in order, with the socket's joined state as the server saw it.
        let joined = phase === 'post';
        for (const c of cases) {
          const answers = s.windows.get(c.index);
          s.windows.delete(c.index);
          const bytes = typeof c.frame === 'string' ? new TextEncoder().encode(c.frame) : c.frame;
          const accusation = opensAsAccusation(bytes);
          const expected = parseClientMessage(bytes, accusation ? MAX_ACCUSE_FRAME_BYTES : MAX_SIGNAL_FRAME_BYTES);
          const fail = (why: string): never => {
            throw new Error(`case ${c.index} (FUZZ_SEED=${SEED}, ${phase} hello, base ${c.base}): ${why}\n  answers: ${JSON.stringify(answers)?.slice(0, 500)}\n  mutations: ${c.m.steps.join('; ')}\n  frame: ${show(c.frame)}`);
          };
          if (answers === undefined) {
            // No marker after it: the server closed the socket. Only a refused identity or a frame above 1 MiB may.
            if (s.closeCode === null) fail('no marker came back, yet the socket is open');
            const unread = cases.length - cases.indexOf(c);
            if (s.closeCode === 1009) {
              // ws closes at once on a frame above 1 MiB, so frames queued before it may go unanswered.
              if (!cases.slice(cases.indexOf(c)).some((x) => (typeof x.frame === 'string' ? Buffer.byteLength(x.frame) : x.frame.byteLength) > HARD_SIGNAL_FRAME_BYTES)) {
                fail('closed 1009 without a frame above 1 MiB');
              }
              tally.closedBy++;
              tally.afterClose += unread - 1;
              break;
            }
            if (!expected.ok || expected.message.type !== 'hello' || joined) fail(`the server closed the socket (${s.closeCode}) after a frame that is not a first hello`);
            const refusal = s.window.find((a) => a.type === 'error');
            if (!refusal || !['ERR_BAD_SIGNATURE', 'ERR_IDENTITY_MISMATCH', 'ERR_NETWORK_FULL'].includes(refusal.code)) fail(`closed after a hello without a refusal: ${JSON.stringify(s.window)}`);
            tally.closedBy++;
            tally.afterClose += unread - 1;
            break;
          }
          const errors = answers.filter((a): a is Extract<ServerMessage, { type: 'error' }> => a.type === 'error');
          for (const e of errors) tally.byCode[e.code] = (tally.byCode[e.code] ?? 0) + 1;
          if (answers.length > 0) tally.answered++;
          else tally.dropped++;
          if (answers.some((a) => a.type === 'welcome')) {
            tally.welcomes++;
            if (joined) fail('a second welcome on one socket');
            joined = true;
            s.joined = true;
          }
          if (!expected.ok) {
            const answered = errors.some((e) => e.code === expected.code && (expected.requestId === undefined || e.requestId === expected.requestId));
            // An accusation-sized frame is held to the accusation rate before it is parsed.
            if (!answered && !(accusation && errors.every((e) => e.code === 'ERR_RATE_LIMITED'))) {
              fail(`the parser refuses it with ${expected.code} (${expected.message}), the server did not say so`);
            }
            if (answered) tally.refusedAsExpected++;
          } else if (!joined && expected.message.type !== 'hello' && !accusation) {
            if (!errors.some((e) => e.code === 'ERR_NOT_JOINED')) fail('a valid message before hello was not answered ERR_NOT_JOINED');
          }
        }
        if (s.closeCode !== null && s.closeCode !== 1008 && s.closeCode !== 1009) throw new Error(`worker ${w}: socket closed with ${s.closeCode} (FUZZ_SEED=${SEED}, cases ${at}..)`);
        s.windows.clear();
      }
      if (sock) {
        invalid.push(...sock.invalid);
        await sock.close();
      }
    };
    await Promise.all(Array.from({ length: SOCKETS }, (_, w) => worker(w)));

    stop = true;
    await pinger;
    // Still working: a newcomer joins the network and its offer reaches the watcher; the watcher still pongs.
    const late = await TestClient.join(server.wsUrl, 'fuzz-late', NETWORK);
    const offer = { type: 'offer', sdp: 'v=0 after the fuzz' } as const;
    late.send({ type: 'signal', to: watcherId, data: offer });
    expect((await watcher.next('signal', (m) => m.from === idOf('fuzz-late'), 5000)).data).toEqual(offer);
    watcher.send({ type: 'ping', id: 1 });
    await watcher.next('pong', (m) => m.id === 1, PONG_MS);
    await late.close();
    const health = await fetch(`${server.httpUrl}/healthz`);
    expect(health.status).toBe(200);

    const heapAfter = await settledHeap();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(
      `signaling: ${tally.sent} frames in ${seconds} s on ${socketsOpened} sockets (seed ${SEED}): ${tally.answered} answered, ${tally.dropped} dropped, ` +
        `${tally.refusedAsExpected} refused with the parser's code, ${tally.welcomes} welcomes, ${tally.closedBy} closed by the server (${tally.afterClose} sent after those); ` +
        `${pongs} pongs, slowest ${slowest.toFixed(0)} ms; heap ${((heapAfter - heapBefore) / 2 ** 20).toFixed(1)} MiB after; codes ${JSON.stringify(tally.byCode)}`,
    );
    expect(invalid, 'answers outside the server schema').toEqual([]);
    expect(watcher.invalid, 'the good peer got messages outside the schema').toEqual([]);
    expect(logLines.filter((l) => /signaling error|handler error/.test(l)), 'the hub caught an error of its own').toEqual([]);
    // Every frame is accounted for: answered, dropped, or the one after which the server closed.
    expect(tally.answered + tally.dropped + tally.closedBy + tally.afterClose).toBe(tally.sent);
    expect(tally.afterClose).toBeLessThan(tally.sent * 0.05);
    expect(tally.answered).toBeGreaterThan(tally.sent * 0.8);
    expect(tally.dropped).toBeGreaterThan(0);
    expect(tally.refusedAsExpected).toBeGreaterThan(tally.sent * 0.5);
    expect(tally.welcomes).toBeGreaterThan(10);
    expect(pongs).toBeGreaterThan(5);
    expect(slowest).toBeLessThan(PONG_MS);
    expect(heapAfter - heapBefore).toBeLessThan(HEAP_MARGIN);
  });
});
