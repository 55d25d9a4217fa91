import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../protocol/index.ts';
import { useSignalingServer } from './helpers/server-fixture.ts';
import { CAPS, hello, sleep, TestClient } from './helpers/ws-client.ts';
import { idOf } from './helpers/identities.ts';

const OFFER = { type: 'offer', sdp: 'v=0 offer' } as const;
const ANSWER = { type: 'answer', sdp: 'v=0 answer' } as const;

const fixture = useSignalingServer();
const { start, join, open } = fixture;

describe('signaling server: membership', () => {
  it('welcomes a peer with the others, announces joins and leaves on close', async () => {
    await start();
    const a = await join('peer-a');
    const welcomeA = a.all('welcome')[0]!;
    expect(welcomeA).toMatchObject({ protocolVersion: PROTOCOL_VERSION, peerId: idOf('peer-a'), network: 'net', peers: [] });
    expect(welcomeA.heartbeatMs).toBe(60_000);
    expect(welcomeA.limits).toEqual({ maxFrameBytes: 64 * 1024, messagesPerSecond: 50 });

    const b = await join('peer-b');
    expect(b.all('welcome')[0]!.peers.map((p) => p.peerId)).toEqual([idOf('peer-a')]);
    const joined = await a.next('join');
    expect(joined.peer).toMatchObject({ peerId: idOf('peer-b'), capabilities: CAPS });
    expect(joined.peer.joinedAt).toBeGreaterThan(0);

    const other = await join('peer-c', 'elsewhere');
    expect(other.all('welcome')[0]!.peers).toEqual([]);

    await b.close();
    expect(await a.next('leave')).toEqual({ type: 'leave', peerId: idOf('peer-b'), reason: 'closed' });
    expect(other.all('join')).toEqual([]);
  });

  it('broadcasts capability updates to the others', async () => {
    await start();
    const a = await join('peer-a');
    const b = await join('peer-b');
    const capabilities = { ...CAPS, memoryBudgetMB: 2048 };
    a.send({ type: 'update', capabilities });
    expect((await b.next('update')).peer).toMatchObject({ peerId: idOf('peer-a'), capabilities });
    const res = await fetch(`${fixture.server.httpUrl}/api/networks/net`);
    const body = (await res.json()) as { peers: { peerId: string; capabilities: unknown }[] };
    expect(body.peers.find((p) => p.peerId === idOf('peer-a'))?.capabilities).toEqual(capabilities);
  });

  it('answers ERR_NOT_JOINED before hello and ERR_ALREADY_JOINED on a second hello', async () => {
    await start();
    const c = await open();
    c.send({ type: 'ping', id: 1 });
    expect(await c.next('error')).toMatchObject({ code: 'ERR_NOT_JOINED', ref: 'ping' });
    await c.hello('peer-a');
    await c.next('welcome');
    await c.hello('peer-a', 'other');
    expect(await c.next('error')).toMatchObject({ code: 'ERR_ALREADY_JOINED', ref: 'hello' });
    c.send({ type: 'ping', id: 2 });
    expect(await c.next('pong')).toMatchObject({ id: 2 });
  });

  it('rejects malformed frames without dropping the connection', async () => {
    await start();
    const c = await open();
    c.send('{nope');
    expect((await c.next('error')).code).toBe('ERR_MALFORMED_JSON');
    c.send(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
    expect((await c.next('error')).code).toBe('ERR_MALFORMED_JSON');
    c.send(JSON.stringify({ type: 'teleport' }));
    expect((await c.next('error')).code).toBe('ERR_UNKNOWN_TYPE');
    c.send({ ...(await hello(await c.nonce(), 'peer-a')), protocolVersion: PROTOCOL_VERSION + 1 } as never);
    expect((await c.next('error')).code).toBe('ERR_PROTOCOL_VERSION');
    c.send('x'.repeat(100 * 1024));
    expect((await c.next('error')).code).toBe('ERR_FRAME_TOO_LARGE');
    // A binary frame carrying valid JSON is as good as a text frame.
    c.send(new TextEncoder().encode(JSON.stringify(await hello(await c.nonce(), 'peer-a'))));
    expect((await c.next('welcome')).peerId).toBe(idOf('peer-a'));
  });

  it('closes a hello to a full network with ERR_NETWORK_FULL (1008)', async () => {
    await start({ maxPeersPerNetwork: 2 });
    await join('peer-a');
    await join('peer-b');
    const c = await open();
    await c.hello('peer-c');
    expect((await c.next('error')).code).toBe('ERR_NETWORK_FULL');
    expect((await c.closed).code).toBe(1008);
    await join('peer-c', 'other-net');
  });

  it('refuses connections over the per-address cap with ERR_TOO_MANY_CONNECTIONS (1008)', async () => {
    await start({ maxConnectionsPerIp: 2 });
    await open();
    const second = await open();
    const third = await open();
    expect((await third.next('error')).code).toBe('ERR_TOO_MANY_CONNECTIONS');
    expect((await third.closed).code).toBe(1008);
    await second.close();
    await sleep(50);
    await join('peer-a');
  });

  it('replaces the socket of a peerId that reconnects', async () => {
    await start();
    const a = await join('peer-a');
    const b1 = await join('peer-b');
    await a.next('join');
    const b2 = await join('peer-b');
    expect(await a.next('leave')).toEqual({ type: 'leave', peerId: idOf('peer-b'), reason: 'replaced' });
    expect((await a.next('join')).peer.peerId).toBe(idOf('peer-b'));
    await b1.closed;
    expect(b2.all('welcome')[0]!.peers.map((p) => p.peerId)).toEqual([idOf('peer-a')]);
    a.send({ type: 'signal', to: idOf('peer-b'), data: OFFER });
    expect(await b2.next('signal')).toEqual({ type: 'signal', from: idOf('peer-a'), data: OFFER });
    await sleep(50);
    expect(a.all('leave')).toHaveLength(1);
    const res = await fetch(`${fixture.server.httpUrl}/api/networks/net`);
    expect(((await res.json()) as { peers: unknown[] }).peers).toHaveLength(2);
  });
});

describe('signaling server: relay', () => {
  it('relays signals and declines, and answers ERR_UNKNOWN_TARGET', async () => {
    await start();
    const a = await join('peer-a');
    const b = await join('peer-b');
    const stranger = await join('peer-x', 'other-net');
    a.send({ type: 'signal', to: idOf('peer-b'), data: OFFER });
    expect(await b.next('signal')).toEqual({ type: 'signal', from: idOf('peer-a'), data: OFFER });
    const candidate = { type: 'candidate', candidate: { candidate: 'candidate:1 1 udp 1 1.2.3.4 5 typ host', sdpMid: '0' } } as const;
    b.send({ type: 'signal', to: idOf('peer-a'), data: ANSWER });
    b.send({ type: 'signal', to: idOf('peer-a'), data: candidate });
    expect(await a.next('signal')).toEqual({ type: 'signal', from: idOf('peer-b'), data: ANSWER });
    expect(await a.next('signal')).toEqual({ type: 'signal', from: idOf('peer-b'), data: candidate });

    b.send({ type: 'decline', to: idOf('peer-a'), reason: 'at capacity' });
    expect(await a.next('decline')).toEqual({ type: 'decline', from: idOf('peer-b'), reason: 'at capacity' });

    a.send({ type: 'signal', to: idOf('peer-x'), data: OFFER });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_UNKNOWN_TARGET', ref: 'signal' });
    a.send({ type: 'decline', to: 'nobody', reason: 'x' });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_UNKNOWN_TARGET', ref: 'decline' });
    a.send({ type: 'signal', to: idOf('peer-a'), data: OFFER });
    expect(await a.next('error')).toMatchObject({ code: 'ERR_UNKNOWN_TARGET' });
    await sleep(50);
    expect(stranger.all('signal')).toEqual([]);
  });

  it('glare: the smaller peerId wins when it offered first', async () => {
    await start();
    const a = await join('peer-a');
    const b = await join('peer-b');
    a.send({ type: 'signal', to: idOf('peer-b'), data: OFFER });
    await b.next('signal');
    b.send({ type: 'signal', to: idOf('peer-a'), data: OFFER });
    expect(await b.next('glare')).toEqual({ type: 'glare', peerId: idOf('peer-a') });
    a.send({ type: 'ping', id: 7 });
    await a.next('pong');
    expect(a.all('signal')).toEqual([]);
    expect(a.all('glare')).toEqual([]);
    expect(b.all('signal')).toEqual([{ type: 'signal', from: idOf('peer-a'), data: OFFER }]);
  });

  it('glare: the smaller peerId wins when it offered second', async () => {
    await start();
    const a = await join('peer-a');
    const b = await join('peer-b');
    b.send({ type: 'signal', to: idOf('peer-a'), data: OFFER });
    await a.next('signal');
    a.send({ type: 'signal', to: idOf('peer-b'), data: OFFER });
    expect(await b.next('glare')).toEqual({ type: 'glare', peerId: idOf('peer-a') });
    expect(await b.next('signal')).toEqual({ type: 'signal', from: idOf('peer-a'), data: OFFER });
    // The loser's offer went out before the crossing was visible; the winner ignores it locally.
    expect(a.all('signal')).toHaveLength(1);
    expect(a.all('glare')).toEqual([]);
    // After the loser answers, a later offer from it is relayed normally.
    b.send({ type: 'signal', to: idOf('peer-a'), data: ANSWER });
    await a.next('signal', (m) => m.data.type === 'answer');
    b.send({ type: 'signal', to: idOf('peer-a'), data: OFFER });
    expect((await a.next('signal')).data).toEqual(OFFER);
  });

  it('rate-limits a flood with ERR_RATE_LIMITED, at most once a second', async () => {
    await start({ messagesPerSecond: 5 });
    const c = await join('peer-a');
    const started = performance.now();
    for (let id = 0; id < 200; id++) c.send({ type: 'ping', id });
    expect((await c.next('error')).code).toBe('ERR_RATE_LIMITED');
    c.send({ type: 'ping', id: 999 });
    await sleep(1200);
    c.send({ type: 'ping', id: 1000 });
    await c.next('pong', (m) => m.id === 1000);
    const seconds = (performance.now() - started) / 1000;
    const pongs = c.all('pong').length;
    expect(pongs).toBeGreaterThanOrEqual(4);
    expect(pongs).toBeLessThanOrEqual(5 + Math.ceil(seconds * 5) + 1);
    expect(c.all('error').filter((e) => e.code === 'ERR_RATE_LIMITED').length).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
  });
});

describe('signaling server: heartbeat', () => {
  it('drops a peer that stops answering pings and announces leave "timeout"', async () => {
    const heartbeatMs = 300;
    await start({ heartbeatMs });
    const watcher = await join('watcher');
    const mute = await TestClient.join(fixture.server.wsUrl, 'mute-peer', 'net', { autoPong: false });
    fixture.track(mute);
    const joinedAt = performance.now();
    const leave = await watcher.next('leave', () => true, 10_000);
    const elapsed = performance.now() - joinedAt;
    expect(leave).toEqual({ type: 'leave', peerId: idOf('mute-peer'), reason: 'timeout' });
    expect(elapsed).toBeLessThan(2 * heartbeatMs + 2000);
    await mute.closed;
    // A peer that answers pings stays through many heartbeats.
    await sleep(4 * heartbeatMs);
    watcher.send({ type: 'ping', id: 1 });
    await watcher.next('pong');
    expect(watcher.all('leave')).toHaveLength(1);
  });

  it('closes a socket that never says hello once the hello deadline passes', async () => {
    await start({ heartbeatMs: 200, helloTimeoutMs: 300 });
    const idle = await open();
    const error = await idle.next('error', () => true, 5000);
    expect(error.code).toBe('ERR_NOT_JOINED');
    expect((await idle.closed).code).toBe(1008);
  });
});
