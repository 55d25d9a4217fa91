// The signaling server under hostile traffic: it must keep serving well-behaved peers, answer
// health checks, never crash, and never buffer without bound for a client that does not read.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { startSignalingServer } from '../signaling/server.ts';
import { CAPS, hello, sleep, TestClient } from './helpers/ws-client.ts';
import { idOf } from './helpers/identities.ts';
import { mulberry32 } from './helpers/random.ts';

/** The good peers' ping rounds under the flood; the flood lasts until they are done (at most FLOOD_MAX_MS). */
const ROUNDS = 5;
const FLOOD_MAX_MS = 30_000;
const OFFER = { type: 'offer', sdp: 'v=0 good offer' } as const;


/** Runs the real CLI in a child process, so "still alive" means the process, not just a promise. */
async function spawnServer(): Promise<{ child: ChildProcess; httpUrl: string; wsUrl: string }> {
  const code = "import('./signaling/main.ts').then((m) => m.runSignalCommand(process.argv.slice(1)))";
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', code, '--', '--port', '0', '--heartbeat-ms', '1000', '--static', '/nonexistent'], {
    cwd: new URL('..', import.meta.url),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const match = /AIGrid signaling on (http:\S+) \((ws:\S+)\)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(`${match[1]} ${match[2]}`);
      }
    });
    child.once('exit', () => reject(new Error(`server exited: ${out}`)));
  });
  const [httpUrl, wsUrl] = line.split(' ') as [string, string];
  return { child, httpUrl, wsUrl };
}

type Junk = (rand: () => number) => string | Uint8Array;

const junk: Record<string, Junk> = {
  randomBytes: (rand) => Uint8Array.from({ length: 1 + Math.floor(rand() * 512) }, () => Math.floor(rand() * 256)),
  badJson: (rand) => ['{', '{"type":', 'null', '[1,2', '{"type":"ping","id":}', '\u0000'][Math.floor(rand() * 6)]!,
  unknownType: (rand) => JSON.stringify({ type: `t${Math.floor(rand() * 1000)}`, x: rand() }),
  oversize: () => 'x'.repeat(100 * 1024),
};

/** Sends junk as fast as the socket drains, until `stop.at`; bounded by time and by batches. */
async function flood(client: TestClient, make: Junk, seed: number, stop: { at: number }): Promise<number> {
  const rand = mulberry32(seed);
  let sent = 0;
  for (let batch = 0; batch < 10_000 && performance.now() < stop.at && client.ws.readyState === client.ws.OPEN; batch++) {
    for (let i = 0; i < 50; i++) client.send(make(rand));
    sent += 50;
    // Let the socket drain so the test process does not buffer without bound either.
    while (client.ws.bufferedAmount > 4 * 1024 * 1024 && performance.now() < stop.at) await sleep(5);
    await sleep(1);
  }
  return sent;
}

describe('signaling server under flood', () => {
  it('keeps serving good peers while several sockets flood it', async () => {
    const { child, httpUrl, wsUrl } = await spawnServer();
    try {
      const flooders = await Promise.all(Object.keys(junk).map(() => TestClient.open(wsUrl)));
      const chatty = await TestClient.join(wsUrl, 'chatty-peer');
      const a = await TestClient.join(wsUrl, 'good-a');
      const b = await TestClient.join(wsUrl, 'good-b');
      // The flood goes on until the good peers have done their rounds (however slow the machine).
      const started = performance.now();
      const stop = { at: started + FLOOD_MAX_MS };

      const floods = Object.values(junk).map((make, i) => flood(flooders[i]!, make, i + 1, stop));
      // Valid messages far above the rate, some aimed at the good peers.
      floods.push(
        flood(chatty, (rand) => (rand() < 0.5 ? JSON.stringify({ type: 'ping', id: 1 }) : JSON.stringify({ type: 'signal', to: idOf('good-a'), data: { type: 'candidate', candidate: { candidate: 'junk' } } })), 9, stop),
      );
      // Frames above the hard cap: ws closes each such socket with 1009; reconnect a bounded number of times.
      const hugeCloses: number[] = [];
      const huge = (async () => {
        for (let i = 0; i < 10 && performance.now() < stop.at; i++) {
          const c = await TestClient.open(wsUrl);
          c.send(new Uint8Array(2 * 1024 * 1024));
          hugeCloses.push((await c.closed).code);
        }
      })();

      // Meanwhile the good peers do their work.
      a.send({ type: 'signal', to: idOf('good-b'), data: OFFER });
      expect(await b.next('signal', (m) => m.from === idOf('good-a'))).toEqual({ type: 'signal', from: idOf('good-a'), data: OFFER });
      b.send({ type: 'signal', to: idOf('good-a'), data: { type: 'answer', sdp: 'v=0 good answer' } });
      expect((await a.next('signal', (m) => m.from === idOf('good-b'))).data.type).toBe('answer');
      let pings = 0;
      while (pings < ROUNDS && performance.now() < stop.at) {
        pings++;
        a.send({ type: 'ping', id: pings });
        b.send({ type: 'ping', id: pings });
        await a.next('pong', (m) => m.id === pings);
        await b.next('pong', (m) => m.id === pings);
        const health = await fetch(`${httpUrl}/healthz`);
        expect(health.status).toBe(200);
        expect(await health.json()).toMatchObject({ ok: true });
        await sleep(100);
      }
      const floodedMs = performance.now() - started;
      stop.at = 0;
      const sent = await Promise.all(floods);
      await huge;

      expect(pings).toBe(ROUNDS);
      expect(child.exitCode).toBe(null);
      expect(sent.reduce((x, y) => x + y, 0)).toBeGreaterThan(1000);
      expect(hugeCloses.length).toBeGreaterThan(0);
      expect(hugeCloses.every((code) => code === 1009)).toBe(true);
      for (const c of [...flooders, chatty]) {
        expect(c.all('error').some((e) => e.code === 'ERR_RATE_LIMITED')).toBe(true);
        // One rate-limit notice per second at most, so a flood is not amplified.
        expect(c.all('error').filter((e) => e.code === 'ERR_RATE_LIMITED').length).toBeLessThanOrEqual(Math.ceil(floodedMs / 1000) + 5);
      }
      expect(flooders[1]!.all('error').some((e) => e.code === 'ERR_MALFORMED_JSON')).toBe(true);
      expect(flooders[3]!.all('error').some((e) => e.code === 'ERR_FRAME_TOO_LARGE')).toBe(true);
      for (const c of [a, b]) expect(c.invalid).toEqual([]);

      // Still fully working afterwards: a newcomer joins and sees the good peers.
      const late = await TestClient.join(wsUrl, 'late-peer');
      const peers = late.all('welcome')[0]!.peers.map((p) => p.peerId);
      expect(peers).toEqual(expect.arrayContaining([idOf('good-a'), idOf('good-b')]));
      await Promise.all([...flooders, chatty, a, b, late].map((c) => c.close()));
    } finally {
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(0);
    }
  });

  it('drops a client that never reads instead of buffering for it', async () => {
    const server = await startSignalingServer({ messagesPerSecond: 100_000, heartbeatMs: 60_000 });
    try {
      const sender = await TestClient.join(server.wsUrl, 'sender');
      const stuck = await TestClient.join(server.wsUrl, 'stuck-peer');
      await sender.next('join');
      stuck.ws.pause();
      // Answers near the frame cap relayed to the stuck peer, so the server's buffer for it grows
      // fast (updates, which the server broadcasts, have a rate of their own now).
      const answer = { type: 'signal', to: idOf('stuck-peer'), data: { type: 'answer', sdp: 'v'.repeat(50_000) } } as const;
      let left = false;
      const leave = sender.next('leave', (m) => m.peerId === idOf('stuck-peer'), 60_000).then((m) => {
        left = true;
        return m;
      });
      for (let i = 0; i < 20_000 && !left; i++) {
        sender.send(answer);
        if (i % 100 === 99) await sleep(5);
      }
      expect(await leave).toEqual({ type: 'leave', peerId: idOf('stuck-peer'), reason: 'timeout' });
      sender.send({ type: 'ping', id: 1 });
      await sender.next('pong');
      stuck.ws.resume();
      await stuck.closed;
      await sender.close();
    } finally {
      await server.close();
    }
  });

  it('answers a burst of hellos with one welcome and ERR_ALREADY_JOINED for the rest', async () => {
    const server = await startSignalingServer();
    try {
      const c = await TestClient.open(server.wsUrl);
      const signed = await hello(await c.nonce(), 'same-peer');
      for (let i = 0; i < 20; i++) c.send(signed);
      await c.next('welcome');
      await c.next('error', (e) => e.code === 'ERR_ALREADY_JOINED');
      await sleep(100);
      expect(c.all('welcome')).toHaveLength(1);
      await c.close();
    } finally {
      await server.close();
    }
  });
});
