// A share of bench:load's simulated signaling clients in one Node process: raw WebSockets (ws)
// saying signed hellos as test/helpers/ws-client.ts does, without its per-message schema check
// (a message's type is read from its first bytes; only challenges, signals and errors are parsed).
// No browsers, no WebRTC. Started by load.ts with an IPC channel:
//   node --import ./bin/register.js test/bench/load-clients.ts
// Commands (ClientCommand) and their answers (ClientReport):
//   prepare  derives this share's identities (peers from..from+count of the run), before any timing
//   join     opens every socket, `concurrency` at a time (opened, not yet welcomed), signs each
//            challenge and waits for all welcomes
//   update   each peer sends `update` and a `ping`; answered when every pong is back (the server
//            handles a connection's messages in order, so the update was handled)
//   relay    `offers` offer-shaped signals at `offersPerSecond` between pairs of this share's peers
//            (sender i to i+s, s drawn in 1..(m-1)/2, so no two peers offer to each other at once and
//            there is no glare); each target answers at once. Latency is send to receipt on the
//            target, both taken on this process's clock, for offers and answers alike.
//   counts   the messages received, by type
//   close    closes every socket and exits
import WebSocket from 'ws';
import { sha256 } from '@noble/hashes/sha2.js';
import { identityFromSeed, signedHello, type Capabilities, type Identity } from '../../protocol/index.ts';

export type ClientCommand =
  | { type: 'prepare'; network: string; from: number; count: number }
  | { type: 'join'; urls: string[]; concurrency: number }
  | { type: 'update' }
  | { type: 'relay'; offers: number; offersPerSecond: number; timeoutMs: number }
  | { type: 'counts' }
  | { type: 'close' };

export type ClientReport =
  | { type: 'prepared'; ms: number }
  | { type: 'joined'; ms: number; joined: number; failed: number; failures: string[] }
  | { type: 'updated'; ms: number }
  | { type: 'relayed'; samples: number[]; sent: number; lost: number; glare: number; errors: Record<string, number> }
  | { type: 'counts'; received: Record<string, number>; receivedBytes: number; dropped: number; errors: Record<string, number> }
  | { type: 'error'; message: string };

const CAPS: Capabilities = { kind: 'node', gpu: null, memoryBudgetMB: 1024, throughput: { gflops: 12.5, backend: 'cpu' }, agent: 'bench-load' };
const UPDATED_CAPS: Capabilities = { ...CAPS, memoryBudgetMB: 2048 };

/** An offer-shaped SDP of a usual size (a data-channel-only offer), the sequence number in its o= line. */
function sdpOf(kind: 'offer' | 'answer', seq: number): string {
  const setup = kind === 'offer' ? 'actpass' : 'active';
  return [
    'v=0',
    `o=- ${seq} 2 IN IP4 127.0.0.1`,
    's=-',
    't=0 0',
    'a=group:BUNDLE 0',
    'a=extmap-allow-mixed',
    'a=msid-semantic: WMS',
    'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
    'c=IN IP4 0.0.0.0',
    'a=ice-ufrag:Wq2b',
    'a=ice-pwd:0mC4vH7sBCb8kQ5kFqM2n6Jd',
    'a=ice-options:trickle',
    'a=fingerprint:sha-256 5B:1F:8C:2A:77:0E:93:41:D5:6C:3B:AE:19:F0:62:8D:4E:B7:2C:90:1A:63:DF:58:07:C4:3E:9B:A2:71:F6:0D',
    `a=setup:${setup}`,
    'a=mid:0',
    'a=sctp-port:5000',
    'a=max-message-size:262144',
    '',
  ].join('\r\n');
}

function seqOf(sdp: string): number {
  const at = sdp.indexOf('o=- ') + 4;
  return Number(sdp.slice(at, sdp.indexOf(' ', at)));
}

interface Client {
  index: number;
  identity: Identity;
  ws?: WebSocket;
  welcomed: boolean;
  closing: boolean;
}

const report = (msg: ClientReport): void => void process.send?.(msg);

let network = '';
let clients: Client[] = [];
const received: Record<string, number> = {};
let receivedBytes = 0;
let dropped = 0;
const errors: Record<string, number> = {};

// Per phase: what a message means to the run going on.
let onWelcome: (c: Client) => void = () => {};
let onJoinFailed: (c: Client, why: string) => void = () => {};
let onPong: (c: Client) => void = () => {};
let onSignal: (c: Client, from: string, data: { type: string; sdp: string }) => void = () => {};
let onGlare: () => void = () => {};

function typeOf(text: string): string {
  return text.startsWith('{"type":"') ? text.slice(9, text.indexOf('"', 9)) : '?';
}

function open(c: Client, url: string): void {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  c.ws = ws;
  ws.on('error', (err) => {
    if (!c.welcomed) onJoinFailed(c, `socket error: ${err.message}`);
  });
  ws.on('close', (code, reason) => {
    if (!c.welcomed) onJoinFailed(c, `closed ${code} ${reason.toString()}`);
    else if (!c.closing) dropped++;
  });
  ws.on('message', (data: Buffer) => {
    const text = data.toString();
    receivedBytes += data.byteLength;
    const type = typeOf(text);
    received[type] = (received[type] ?? 0) + 1;
    switch (type) {
      case 'challenge': {
        const { nonce } = JSON.parse(text) as { nonce: string };
        void signedHello(c.identity, nonce, network, CAPS).then((hello) => ws.send(JSON.stringify(hello)));
        return;
      }
      case 'welcome':
        c.welcomed = true;
        return onWelcome(c);
      case 'pong':
        return onPong(c);
      case 'signal': {
        const msg = JSON.parse(text) as { from: string; data: { type: string; sdp: string } };
        return onSignal(c, msg.from, msg.data);
      }
      case 'glare':
        return onGlare();
      case 'error': {
        const { code } = JSON.parse(text) as { code: string };
        errors[code] = (errors[code] ?? 0) + 1;
        if (!c.welcomed) onJoinFailed(c, `error ${code}`);
        return;
      }
    }
  });
}

function prepare(cmd: Extract<ClientCommand, { type: 'prepare' }>): void {
  const started = performance.now();
  network = cmd.network;
  clients = [];
  for (let i = 0; i < cmd.count; i++) {
    const index = cmd.from + i;
    const identity = identityFromSeed(sha256(new TextEncoder().encode(`aigrid-bench-load:${index}`)));
    clients.push({ index, identity, welcomed: false, closing: false });
  }
  report({ type: 'prepared', ms: performance.now() - started });
}

function join(cmd: Extract<ClientCommand, { type: 'join' }>): void {
  const started = performance.now();
  let next = 0;
  let pending = 0;
  let joined = 0;
  let failed = 0;
  const failures: string[] = [];
  const settled = new Set<Client>();
  const done = () => {
    if (joined + failed < clients.length) return;
    report({ type: 'joined', ms: performance.now() - started, joined, failed, failures: failures.slice(0, 10) });
  };
  const fill = () => {
    while (pending < cmd.concurrency && next < clients.length) {
      pending++;
      // With several signaling processes, peers alternate between them: relays cross processes.
      const c = clients[next++]!;
      open(c, cmd.urls[c.index % cmd.urls.length]!);
    }
  };
  onWelcome = (c) => {
    if (settled.has(c)) return;
    settled.add(c);
    pending--;
    joined++;
    fill();
    done();
  };
  onJoinFailed = (c, why) => {
    if (settled.has(c)) return;
    settled.add(c);
    pending--;
    failed++;
    failures.push(`peer ${c.index}: ${why}`);
    fill();
    done();
  };
  fill();
}

function update(): void {
  const started = performance.now();
  const live = clients.filter((c) => c.welcomed && c.ws?.readyState === WebSocket.OPEN);
  let waiting = live.length;
  onPong = () => {
    if (--waiting === 0) report({ type: 'updated', ms: performance.now() - started });
  };
  if (waiting === 0) return report({ type: 'updated', ms: 0 });
  for (const c of live) {
    c.ws!.send(JSON.stringify({ type: 'update', capabilities: UPDATED_CAPS }));
    c.ws!.send(JSON.stringify({ type: 'ping', id: 1 }));
  }
}

function relay(cmd: Extract<ClientCommand, { type: 'relay' }>): void {
  const live = clients.filter((c) => c.welcomed && c.ws?.readyState === WebSocket.OPEN);
  const m = live.length;
  if (m < 3) return report({ type: 'relayed', samples: [], sent: 0, lost: 0, glare: 0, errors: {} });
  const samples: number[] = [];
  const offerSent = new Map<number, number>();
  const answerSent = new Map<number, number>();
  let answered = 0;
  let glare = 0;
  const errorsBefore = { ...errors };
  const finish = () => {
    clearTimeout(deadline);
    const relayErrors: Record<string, number> = {};
    for (const [code, n] of Object.entries(errors)) if (n > (errorsBefore[code] ?? 0)) relayErrors[code] = n - (errorsBefore[code] ?? 0);
    report({ type: 'relayed', samples, sent, lost: sent - answered, glare, errors: relayErrors });
    onSignal = () => {};
  };
  let sent = 0;
  let deadline: NodeJS.Timeout | undefined;
  onGlare = () => glare++;
  onSignal = (c, from, data) => {
    const now = performance.now();
    const seq = seqOf(data.sdp);
    if (data.type === 'offer') {
      const at = offerSent.get(seq);
      if (at === undefined) return;
      offerSent.delete(seq);
      samples.push(now - at);
      answerSent.set(seq, performance.now());
      c.ws!.send(JSON.stringify({ type: 'signal', to: from, data: { type: 'answer', sdp: sdpOf('answer', seq) } }));
    } else if (data.type === 'answer') {
      const at = answerSent.get(seq);
      if (at === undefined) return;
      answerSent.delete(seq);
      samples.push(now - at);
      answered++;
      if (sent === cmd.offers && answered === sent) finish();
    }
  };
  // Senders in a shuffled order, each with its own offset to its target.
  const order = live.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const maxOffset = Math.floor((m - 1) / 2);
  const offsets = live.map(() => 1 + Math.floor(Math.random() * maxOffset));
  const started = performance.now();
  const tick = () => {
    const due = Math.min(cmd.offers, Math.floor(((performance.now() - started) * cmd.offersPerSecond) / 1000));
    while (sent < due) {
      const i = order[sent % m]!;
      const from = live[i]!;
      const to = live[(i + offsets[i]!) % m]!;
      const seq = sent++;
      offerSent.set(seq, performance.now());
      from.ws!.send(JSON.stringify({ type: 'signal', to: to.identity.peerId, data: { type: 'offer', sdp: sdpOf('offer', seq) } }));
    }
    if (sent < cmd.offers) setTimeout(tick, 1);
    else deadline = setTimeout(finish, cmd.timeoutMs);
  };
  tick();
}

process.on('message', (cmd: ClientCommand) => {
  try {
    switch (cmd.type) {
      case 'prepare':
        return prepare(cmd);
      case 'join':
        return join(cmd);
      case 'update':
        return update();
      case 'relay':
        return relay(cmd);
      case 'counts':
        return report({ type: 'counts', received: { ...received }, receivedBytes, dropped, errors: { ...errors } });
      case 'close':
        for (const c of clients) {
          c.closing = true;
          c.ws?.terminate();
        }
        process.exit(0);
    }
  } catch (err) {
    report({ type: 'error', message: (err as Error)?.stack ?? String(err) });
  }
});
process.on('disconnect', () => process.exit(0));
