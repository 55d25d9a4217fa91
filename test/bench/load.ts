// npm run bench:load — the signaling server and the gateway under load, on this machine (loopback).
// 1. Signaling: AIGRID_LOAD_PEERS (default 10,000) simulated clients join ONE network on one
//    signaling process, each then sends an `update`, then offer/answer-shaped `signal`s are relayed
//    between pairs of them. Reported: joins/s (first socket opened to the last welcome, over all
//    peers), the frames and bytes the server sent during the joins (per peer: flat when the
//    directory is looked up, growing with n when every join is announced to all), the updates' time,
//    relay latency p50/p99 (send to receipt on the target), and the server's RSS (after a full GC)
//    over its RSS before the joins, per 1,000 peers. Side by side at 2,000 peers: the same with
//    fullDirectoryPeers raised to the peer count, i.e. the old quadratic directory (every welcome
//    lists every member, every join is announced to all) as the anchor, and the looked-up
//    directory at the same size; ratios of joins/s against that anchor.
//    What the numbers include: the server runs in a child process of its own (load-server.ts), so
//    its RSS, CPU time and sent frames are its alone. The clients are raw WebSockets (ws) with
//    signed hellos, as test/helpers/ws-client.ts; no browsers, no WebRTC. They run in
//    AIGRID_LOAD_WORKERS child processes (load-clients.ts, default 1), their identities derived
//    before any timing; each challenge is signed when it arrives (it is the server's nonce). So
//    joins/s includes TCP connect, the WebSocket upgrade, the client's signature, the server's
//    verification, and the clients' own CPU, all on the same cores as the server (2 here): a
//    machine of its own for the server would do better. At most AIGRID_LOAD_CONCURRENCY sockets
//    (default 200 over all workers) are opening (not yet welcomed) at once. Relays are paced at
//    AIGRID_LOAD_RELAY_RATE offers a second (default 2,000; each answered at once, so twice that
//    many signals), AIGRID_LOAD_RELAYS offers in all (default one per peer), between peers of one
//    worker, so that send and receipt are timed on one clock; the server sees no difference.
//    Latency includes the client process's own event loop. The server keeps its default rates
//    (50 messages/s per connection, 1 update/s) and heartbeat (5 s).
//    Then the same at AIGRID_LOAD_PEERS on two signaling processes sharing one Redis (Debian's
//    redis-server on loopback, started here): peers alternate between the processes, so about half
//    the relays cross them through Redis pub/sub; the RSS figure is the two processes' together.
// 2. Chats: AIGRID_LOAD_CHATS (default 100) chat requests at once through the gateway with its
//    default limits (16 running, 64 waiting, the rest 429) on a CPU grid of AIGRID_LOAD_GRID_PEERS
//    (default 2) Node peers serving tiny-llama (load-chats.ts): answered (the owner's own greedy
//    answer), refused 429 (the limits working; not failures), failed (any other status, or a wrong
//    or empty answer), the peak queue the 429 bodies name, p50/p99 latency of the answered ones.
// Goals: 0 failed chats, 10,000 peers joined at >= 1,000/s, relay p99 < 10 ms.
// Environment: AIGRID_LOAD_PEERS, AIGRID_LOAD_CHATS, AIGRID_LOAD_WORKERS, AIGRID_LOAD_CONCURRENCY,
// AIGRID_LOAD_RELAYS, AIGRID_LOAD_RELAY_RATE, AIGRID_LOAD_GRID_PEERS, AIGRID_LOAD_ANCHOR=0 (skip
// the 2,000-peer runs), AIGRID_LOAD_REDIS=0 (skip the two processes on Redis), AIGRID_LOAD_PROF=DIR (CPU profile of the server during each run's joins).
// Ends with one line: RESULT {json}.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { SignalingServerOptions } from '../../signaling/server.ts';
import type { ClientCommand, ClientReport } from './load-clients.ts';
import type { ServerCommand, ServerMessage } from './load-server.ts';
import { runChats, type ChatResults } from './load-chats.ts';
import { startRedisServer } from '../helpers/redis-server.ts';

const PEERS = positiveInt('AIGRID_LOAD_PEERS', 10_000);
const CHATS = positiveInt('AIGRID_LOAD_CHATS', 100, 0);
const WORKERS = positiveInt('AIGRID_LOAD_WORKERS', 1);
const CONCURRENCY = positiveInt('AIGRID_LOAD_CONCURRENCY', 200);
const RELAYS = positiveInt('AIGRID_LOAD_RELAYS', PEERS);
const RELAY_RATE = positiveInt('AIGRID_LOAD_RELAY_RATE', 2_000);
const GRID_PEERS = positiveInt('AIGRID_LOAD_GRID_PEERS', 2);
const ANCHOR = process.env.AIGRID_LOAD_ANCHOR !== '0';
const REDIS = process.env.AIGRID_LOAD_REDIS !== '0';
const ANCHOR_PEERS = Math.min(2_000, PEERS);
const PROFILE_DIR = process.env.AIGRID_LOAD_PROF;
const NETWORK = 'bench-load';
const REGISTER = new URL('../../bin/register.js', import.meta.url).pathname;
const SERVER_SCRIPT = new URL('./load-server.ts', import.meta.url).pathname;
const CLIENT_SCRIPT = new URL('./load-clients.ts', import.meta.url).pathname;
const JOIN_TIMEOUT_MS = 600_000;

const GOAL_JOINS_PER_S = 1_000;
const GOAL_PEERS = 10_000;
const GOAL_RELAY_P99_MS = 10;

function positiveInt(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}, got ${raw}`);
  return value;
}

const quantile = (sorted: number[], q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
const round = (x: number, digits = 2) => Number(x.toFixed(digits));
const log = (line: string) => console.log(line);

/** A child process spoken to over IPC: commands out, the next report of a type back. */
class Child<Out extends { type: string }, In extends { type: string }> {
  private readonly child: ChildProcess;
  private readonly inbox: In[] = [];
  private waiters: { type: string; resolve: (m: In) => void; reject: (e: Error) => void }[] = [];
  private exited: Error | null = null;

  constructor(
    readonly name: string,
    script: string,
    args: string[],
    execArgv: string[],
  ) {
    this.child = fork(script, args, { execArgv: ['--import', REGISTER, ...execArgv], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: In) => {
      if (m.type === 'error') {
        const err = new Error(`${name}: ${(m as unknown as { message: string }).message}`);
        for (const w of this.waiters.splice(0)) w.reject(err);
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
      else this.inbox.push(m);
    });
    this.child.once('exit', (code, signal) => {
      this.exited = new Error(`${name} exited (${signal ?? code})`);
      for (const w of this.waiters.splice(0)) w.reject(this.exited);
    });
  }

  send(cmd: Out): void {
    this.child.send(cmd);
  }

  next<T extends In['type']>(type: T, timeoutMs = JOIN_TIMEOUT_MS): Promise<Extract<In, { type: T }>> {
    const i = this.inbox.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0] as Extract<In, { type: T }>);
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no ${type} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as Extract<In, { type: T }>);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  async ask<T extends In['type']>(cmd: Out, type: T, timeoutMs?: number): Promise<Extract<In, { type: T }>> {
    const reply = this.next(type, timeoutMs);
    this.send(cmd);
    return reply;
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }

  whenExited(): Promise<void> {
    return this.exited ? Promise.resolve() : new Promise((resolve) => this.child.once('exit', () => resolve()));
  }
}

interface SignalingRun {
  label: string;
  peers: number;
  fullDirectoryPeers: number;
  joined: number;
  joinFailures: string[];
  joinS: number;
  joinsPerS: number;
  /** Frames and bytes the server sent from the first socket to the last welcome. */
  joinFrames: number;
  joinMB: number;
  joinFramesByType: Record<string, number>;
  joinServerCpuS: number;
  updateS: number;
  relays: number;
  relayLost: number;
  relayGlare: number;
  relayErrors: Record<string, number>;
  relayP50Ms: number;
  relayP99Ms: number;
  relayMaxMs: number;
  rssBeforeMB: number;
  rssMB: number;
  rssMBPer1kPeers: number;
  heapMB: number;
  /** Sockets the server closed on welcomed peers before the end (heartbeat, backpressure). */
  dropped: number;
  clientErrors: Record<string, number>;
}

type Stats = Extract<ServerMessage, { type: 'stats' }>;

/** The servers' stats added up (one process, or the processes sharing a Redis). */
async function statsOf(servers: Child<ServerCommand, ServerMessage>[]): Promise<Stats> {
  const all = await Promise.all(servers.map((s) => s.ask({ type: 'stats' }, 'stats')));
  const sum = (k: 'rssMB' | 'heapMB' | 'cpuMs' | 'sent' | 'sentBytes') => all.reduce((n, x) => n + x[k], 0);
  const sentByType: Record<string, number> = {};
  for (const x of all) for (const [type, n] of Object.entries(x.sentByType)) sentByType[type] = (sentByType[type] ?? 0) + n;
  return { type: 'stats', rssMB: sum('rssMB'), heapMB: sum('heapMB'), cpuMs: sum('cpuMs'), sent: sum('sent'), sentBytes: sum('sentBytes'), sentByType };
}

/** `redis`: that many signaling processes on this Redis (peers alternate between them); else one in memory. */
async function signalingRun(label: string, peers: number, fullDirectoryPeers: number, redis?: { url: string; processes: number }): Promise<SignalingRun> {
  const options: SignalingServerOptions = {
    // Every client comes from 127.0.0.1.
    maxConnectionsPerIp: peers + 100,
    maxPeersPerNetwork: peers,
    fullDirectoryPeers,
    ...(redis ? { redis: redis.url } : {}),
  };
  const servers = Array.from({ length: redis?.processes ?? 1 }, (_, i) => new Child<ServerCommand, ServerMessage>(`server ${i}`, SERVER_SCRIPT, [JSON.stringify(options)], ['--expose-gc']));
  const workers: Child<ClientCommand, ClientReport>[] = [];
  try {
    const urls = (await Promise.all(servers.map((server) => server.next('ready', 60_000)))).map((r) => r.wsUrl);
    const workerCount = Math.min(WORKERS, Math.max(1, Math.floor(peers / 3)));
    for (let w = 0; w < workerCount; w++) workers.push(new Child<ClientCommand, ClientReport>(`clients ${w}`, CLIENT_SCRIPT, [], []));
    const shares = workers.map((_, w) => Math.floor((peers * (w + 1)) / workerCount) - Math.floor((peers * w) / workerCount));
    let from = 0;
    await Promise.all(
      workers.map((worker, w) => {
        const cmd: ClientCommand = { type: 'prepare', network: NETWORK, from, count: shares[w]! };
        from += shares[w]!;
        return worker.ask(cmd, 'prepared', 120_000);
      }),
    );
    const before = await statsOf(servers);
    if (PROFILE_DIR) await servers[0]!.ask({ type: 'profile' }, 'profiled');

    const started = performance.now();
    const concurrency = Math.max(1, Math.floor(CONCURRENCY / workerCount));
    const joins = await Promise.all(workers.map((worker) => worker.ask({ type: 'join', urls, concurrency }, 'joined')));
    const joinMs = performance.now() - started;
    const afterJoins = await statsOf(servers);
    if (PROFILE_DIR) await servers[0]!.ask({ type: 'profile', file: join(PROFILE_DIR, `server-joins-${label.replace(/\W+/g, '-')}-${peers}.cpuprofile`) }, 'profiled');
    const joined = joins.reduce((n, j) => n + j.joined, 0);
    log(`${label}, ${peers} peers: ${joined} welcomed in ${round(joinMs / 1000)} s${joined < peers ? ` (${peers - joined} failed: ${joins.flatMap((j) => j.failures).slice(0, 3).join('; ')})` : ''}`);

    const updateStarted = performance.now();
    await Promise.all(workers.map((worker) => worker.ask({ type: 'update' }, 'updated')));
    const updateMs = performance.now() - updateStarted;

    const relayShares = workers.map((_, w) => Math.floor((RELAYS * (w + 1)) / workerCount) - Math.floor((RELAYS * w) / workerCount));
    const relays = await Promise.all(
      workers.map((worker, w) => worker.ask({ type: 'relay', offers: relayShares[w]!, offersPerSecond: RELAY_RATE / workerCount, timeoutMs: 10_000 }, 'relayed')),
    );
    const samples = relays.flatMap((r) => r.samples).sort((a, b) => a - b);
    const end = await statsOf(servers);
    const counts = await Promise.all(workers.map((worker) => worker.ask({ type: 'counts' }, 'counts')));
    const clientErrors: Record<string, number> = {};
    for (const c of counts) for (const [code, n] of Object.entries(c.errors)) clientErrors[code] = (clientErrors[code] ?? 0) + n;
    const relayErrors: Record<string, number> = {};
    for (const r of relays) for (const [code, n] of Object.entries(r.errors)) relayErrors[code] = (relayErrors[code] ?? 0) + n;
    const joinFramesByType: Record<string, number> = {};
    for (const [type, n] of Object.entries(afterJoins.sentByType)) {
      const d = n - (before.sentByType[type] ?? 0);
      if (d > 0) joinFramesByType[type] = d;
    }
    return {
      label,
      peers,
      fullDirectoryPeers,
      joined,
      joinFailures: joins.flatMap((j) => j.failures).slice(0, 5),
      joinS: joinMs / 1000,
      joinsPerS: joined / (joinMs / 1000),
      joinFrames: afterJoins.sent - before.sent,
      joinMB: (afterJoins.sentBytes - before.sentBytes) / 2 ** 20,
      joinFramesByType,
      joinServerCpuS: (afterJoins.cpuMs - before.cpuMs) / 1000,
      updateS: updateMs / 1000,
      relays: relays.reduce((n, r) => n + r.sent, 0),
      relayLost: relays.reduce((n, r) => n + r.lost, 0),
      relayGlare: relays.reduce((n, r) => n + r.glare, 0),
      relayErrors,
      relayP50Ms: quantile(samples, 0.5),
      relayP99Ms: quantile(samples, 0.99),
      relayMaxMs: samples.at(-1) ?? NaN,
      rssBeforeMB: before.rssMB,
      rssMB: end.rssMB,
      rssMBPer1kPeers: (end.rssMB - before.rssMB) / (joined / 1000),
      heapMB: end.heapMB,
      dropped: counts.reduce((n, c) => n + c.dropped, 0),
      clientErrors,
    };
  } finally {
    for (const worker of workers) {
      try {
        worker.send({ type: 'close' });
      } catch {
        worker.kill();
      }
    }
    await Promise.race([Promise.all(workers.map((w) => w.whenExited())), new Promise((r) => setTimeout(r, 5_000))]);
    for (const worker of workers) worker.kill();
    await Promise.all(servers.map((server) => server.ask({ type: 'close' }, 'closed', 10_000).catch(() => undefined))); // killed below
    for (const server of servers) server.kill();
  }
}

function row(r: SignalingRun): Record<string, number | string> {
  return {
    peers: r.peers,
    directory: r.fullDirectoryPeers >= r.peers ? 'full' : 'lookup',
    processes: r.label.includes('Redis') ? '2, Redis' : '1',
    'joins/s': Math.round(r.joinsPerS),
    'join s': round(r.joinS),
    'frames sent': r.joinFrames,
    'frames/peer': round(r.joinFrames / r.joined, 1),
    'MB sent': round(r.joinMB, 1),
    'server CPU s': round(r.joinServerCpuS),
    'update s': round(r.updateS),
    'relay p50 ms': round(r.relayP50Ms, 3),
    'relay p99 ms': round(r.relayP99Ms, 3),
    'RSS MB': round(r.rssMB, 1),
    'RSS MB/1k peers': round(r.rssMBPer1kPeers, 2),
  };
}

async function main(): Promise<void> {
  log(`bench:load — ${PEERS} signaling peers (${WORKERS} client process${WORKERS > 1 ? 'es' : ''}, ${CONCURRENCY} opening at once), ${RELAYS} relays at ${RELAY_RATE} offers/s; ${CHATS} chats on ${GRID_PEERS} CPU peers`);
  const runs: Record<string, SignalingRun> = {};
  // The anchor first: its quadratic traffic is bounded at 2,000 peers.
  if (ANCHOR && PEERS > 3) {
    runs.anchor = await signalingRun('full directory (anchor)', ANCHOR_PEERS, ANCHOR_PEERS);
    if (ANCHOR_PEERS !== PEERS) runs.sameSize = await signalingRun('looked-up directory', ANCHOR_PEERS, 64);
  }
  runs.main = await signalingRun('looked-up directory', PEERS, 64);
  if (!runs.sameSize && runs.anchor) runs.sameSize = runs.main;
  const main = runs.main;
  if (REDIS) {
    const redis = await startRedisServer();
    try {
      runs.redis = await signalingRun('two processes on Redis', PEERS, 64, { url: redis.url, processes: 2 });
    } finally {
      await redis.close();
    }
  }

  // AIGRID_LOAD_CHATS=0 skips the chats (signaling only; its goal is then not judged).
  const chats: ChatResults | null = CHATS > 0 ? await runChats(CHATS, GRID_PEERS, log) : null;

  console.log('');
  console.log('Signaling: one network (RSS after a full GC, over the RSS before the joins; two processes added up)');
  console.table(Object.fromEntries(Object.entries(runs).filter(([k]) => k !== 'sameSize' || runs.sameSize !== main).map(([k, r]) => [k, row(r)])));
  for (const r of new Set(Object.values(runs))) {
    console.log(`  ${r.label} @ ${r.peers}: frames sent in the joins by type ${JSON.stringify(r.joinFramesByType)}`);
    const trouble = [
      r.joined < r.peers ? `${r.peers - r.joined} joins failed (${r.joinFailures.join('; ')})` : '',
      r.dropped > 0 ? `${r.dropped} welcomed peers dropped by the server` : '',
      r.relayLost > 0 ? `${r.relayLost} of ${r.relays} relays unanswered` : '',
      r.relayGlare > 0 ? `${r.relayGlare} glare` : '',
      Object.keys(r.clientErrors).length > 0 ? `errors heard by clients ${JSON.stringify(r.clientErrors)}` : '',
    ].filter(Boolean);
    if (trouble.length > 0) console.log(`  ${r.label} @ ${r.peers}: ${trouble.join('; ')}`);
  }
  const { anchor, sameSize } = runs;
  if (anchor && sameSize) {
    console.log(`ratio joins/s, looked-up / full directory (anchor) at ${anchor.peers} peers: ${round(sameSize.joinsPerS / anchor.joinsPerS)}`);
    if (sameSize !== main) console.log(`ratio joins/s, looked-up at ${main.peers} / full directory (anchor) at ${anchor.peers} peers: ${round(main.joinsPerS / anchor.joinsPerS)}`);
    console.log(`ratio frames sent per join, full directory (anchor) / looked-up at ${anchor.peers} peers: ${round(anchor.joinFrames / anchor.joined / (sameSize.joinFrames / sameSize.joined))}`);
  }
  if (runs.redis) console.log(`ratio joins/s, two processes on Redis / one process at ${main.peers} peers: ${round(runs.redis.joinsPerS / main.joinsPerS)}`);

  if (chats) {
    console.log('');
    console.log(`Chats: ${chats.requests} at once through the gateway (default limits) on ${chats.gridPeers} CPU peers serving tiny-llama, in ${round(chats.wallMs / 1000)} s`);
    console.table({
      chats: {
        answered: chats.answered,
        'queued (peak, from 429s)': chats.peakQueued ?? '-',
        'refused 429': chats.refused,
        failed: chats.failed,
        'p50 ms': Math.round(chats.p50Ms),
        'p99 ms': Math.round(chats.p99Ms),
        '429 p50 ms': Number.isNaN(chats.refusedP50Ms) ? '-' : round(chats.refusedP50Ms, 1),
      },
    });
    for (const f of chats.failures) console.log(`  failed: ${f}`);
  }

  console.log('');
  const goal = (ok: boolean, what: string) => console.log(`goal ${ok ? 'met   ' : 'MISSED'}: ${what}`);
  if (chats) goal(chats.failed === 0, `0 failed chats (${chats.failed})`);
  goal(main.peers >= GOAL_PEERS && main.joined === main.peers && main.joinsPerS >= GOAL_JOINS_PER_S, `${GOAL_PEERS} peers joined at >= ${GOAL_JOINS_PER_S}/s (${main.joined} of ${main.peers} at ${Math.round(main.joinsPerS)}/s)`);
  goal(main.relayP99Ms < GOAL_RELAY_P99_MS, `relay p99 < ${GOAL_RELAY_P99_MS} ms (${round(main.relayP99Ms, 3)} ms)`);
  if (runs.redis) {
    const r = runs.redis;
    goal(r.peers >= GOAL_PEERS && r.joined === r.peers && r.joinsPerS >= GOAL_JOINS_PER_S, `on two processes over Redis: ${GOAL_PEERS} peers joined at >= ${GOAL_JOINS_PER_S}/s (${r.joined} of ${r.peers} at ${Math.round(r.joinsPerS)}/s)`);
    goal(r.relayP99Ms < GOAL_RELAY_P99_MS, `on two processes over Redis: relay p99 < ${GOAL_RELAY_P99_MS} ms (${round(r.relayP99Ms, 3)} ms)`);
  }

  const result = {
    peers: main.joined,
    joinsPerS: Math.round(main.joinsPerS),
    relayP99Ms: round(main.relayP99Ms, 3),
    rssMBPer1kPeers: round(main.rssMBPer1kPeers, 2),
    failed: chats ? chats.failed : null,
    ...(runs.redis ? { redisJoinsPerS: Math.round(runs.redis.joinsPerS), redisRelayP99Ms: round(runs.redis.relayP99Ms, 3), redisRssMBPer1kPeers: round(runs.redis.rssMBPer1kPeers, 2) } : {}),
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

await main();
process.exit(0);
