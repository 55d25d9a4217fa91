// ICE options of the signaling server: URL validation, the TURN REST API credentials coturn checks
// (use-auth-secret), and the welcome that hands each peer its servers with fresh credentials.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { AigridError, parseIceUrl, parseServerMessage } from '../protocol/index.ts';
import { DEFAULT_TURN_LIFETIME_S, iceForPeers, turnCredential } from '../signaling/ice.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { Mesh } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import { CAPS, TestClient } from './helpers/ws-client.ts';
import { testIdentity } from './helpers/identities.ts';

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AigridError);
    expect((err as AigridError).code).toBe('ERR_INVALID_ARGUMENT');
    return (err as AigridError).message;
  }
  throw new Error('not refused');
}

describe('ICE URLs', () => {
  it('parses STUN and TURN URLs of RFC 7064 and 7065', () => {
    expect(parseIceUrl('stun:stun.example.org')).toEqual({ scheme: 'stun', host: 'stun.example.org' });
    expect(parseIceUrl('stun:192.0.2.1:3478')).toEqual({ scheme: 'stun', host: '192.0.2.1', port: 3478 });
    expect(parseIceUrl('stuns:[2001:db8::1]:5349')).toEqual({ scheme: 'stuns', host: '[2001:db8::1]', port: 5349 });
    expect(parseIceUrl('turn:turn.example.org:3478?transport=udp')).toEqual({ scheme: 'turn', host: 'turn.example.org', port: 3478, transport: 'udp' });
    expect(parseIceUrl('turns:turn.example.org:443?transport=tcp')).toEqual({ scheme: 'turns', host: 'turn.example.org', port: 443, transport: 'tcp' });
    expect(parseIceUrl('turn:127.0.0.1')).toEqual({ scheme: 'turn', host: '127.0.0.1' });
  });

  it('refuses anything else with ERR_INVALID_ARGUMENT naming the URL', () => {
    for (const url of [
      '',
      'stun',
      'http://turn.example.org',
      'turn://turn.example.org:3478',
      'turn:user@turn.example.org',
      'turn:turn.example.org:0',
      'turn:turn.example.org:65536',
      'turn:turn.example.org:3478?transport=sctp',
      'turn:turn.example.org:3478?foo=bar',
      'stun:turn.example.org:3478?transport=udp',
      'turn:turn.example.org/path',
      'turn:-bad-.example',
      'turn:[::1',
      'TURN:turn.example.org',
      `turn:${'a'.repeat(600)}`,
    ]) {
      expect(refusal(() => parseIceUrl(url))).toMatch(/^ICE server "/);
    }
  });
});

describe('TURN credentials', () => {
  it('are the TURN REST API scheme: username expiry:peerId, credential base64 HMAC-SHA1 of the username', () => {
    const { username, credential } = turnCredential('s3cret', 'peer-a', 1_900_000_000);
    expect(username).toBe('1900000000:peer-a');
    expect(credential).toBe(createHmac('sha1', 's3cret').update('1900000000:peer-a').digest('base64'));
    // A known answer (computed independently with `openssl dgst -sha1 -hmac s3cret -binary | base64`).
    expect(credential).toBe('E6hgtYi7dxoTwRtp0mKrnFyqQDs=');
  });

  it('are minted per peer with the configured lifetime; STUN entries carry none', () => {
    const ice = iceForPeers({ servers: ['stun:127.0.0.1:3478', 'turn:127.0.0.1:3478?transport=udp', 'turns:example.org:443?transport=tcp'], turnSecret: 'k', turnLifetimeS: 3600, relayOnly: true })!;
    const now = 1_800_000_000_000;
    const out = ice('peer-b', now);
    expect(out).toEqual({
      iceTransportPolicy: 'relay',
      iceServers: [
        { urls: ['stun:127.0.0.1:3478'] },
        { urls: ['turn:127.0.0.1:3478?transport=udp', 'turns:example.org:443?transport=tcp'], ...turnCredential('k', 'peer-b', 1_800_003_600) },
      ],
    });
    expect(ice('peer-b', now + 1000).iceServers![1]!.credential).not.toBe(out.iceServers![1]!.credential);
    expect(iceForPeers({ servers: ['turn:h'], turnSecret: 'k' })!('p', 0).iceServers![0]!.username).toBe(`${DEFAULT_TURN_LIFETIME_S}:p`);
    expect(iceForPeers({})).toBeUndefined();
    expect(iceForPeers({ servers: ['stun:h:1'] })!('p')).toEqual({ iceServers: [{ urls: ['stun:h:1'] }] });
  });

  it('refuses options that cannot work', () => {
    expect(refusal(() => iceForPeers({ servers: ['turn:h:3478'] }))).toMatch(/secret/);
    expect(refusal(() => iceForPeers({ servers: ['stun:h:3478'], turnSecret: 'k' }))).toMatch(/without a turn/);
    expect(refusal(() => iceForPeers({ servers: ['stun:h:3478'], relayOnly: true }))).toMatch(/relay-only ICE needs a TURN server/);
    expect(refusal(() => iceForPeers({ relayOnly: true }))).toMatch(/relay-only/);
    expect(refusal(() => iceForPeers({ servers: ['turn:h'], turnSecret: 'k', turnLifetimeS: 10 }))).toMatch(/lifetime/);
    expect(refusal(() => iceForPeers({ servers: ['turn:h'], turnSecret: 'k', turnLifetimeS: 1.5 }))).toMatch(/lifetime/);
    expect(refusal(() => iceForPeers({ servers: Array.from({ length: 17 }, (_, i) => `stun:h${i}`) }))).toMatch(/at most 16/);
    expect(refusal(() => iceForPeers({ servers: ['turn:h'], turnSecret: 'k', turnLifetimeS: 60, turnRenewMs: 60_000 }))).toMatch(/renewed .* within their lifetime/);
    expect(refusal(() => iceForPeers({ servers: ['turn:h'], turnSecret: 'k', turnRenewMs: 10 }))).toMatch(/renewed every 100 ms/);
  });

  it('renews TURN credentials at half their lifetime; STUN alone needs no renewal', () => {
    expect(iceForPeers({ servers: ['turn:h'], turnSecret: 'k', turnLifetimeS: 600 })!.renewMs).toBe(300_000);
    expect(iceForPeers({ servers: ['stun:h'] })!.renewMs).toBeUndefined();
  });
});

describe('the welcome', () => {
  let server: SignalingServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('a server does not start with a bad ICE URL', async () => {
    await expect(startSignalingServer({ ice: { servers: ['turn:bad host'], turnSecret: 'k' } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  it('hands each peer its servers with credentials minted for it, fresh on each reconnect', async () => {
    server = await startSignalingServer({ ice: { servers: ['stun:127.0.0.1:3478', 'turn:127.0.0.1:3478?transport=udp'], turnSecret: 'k', turnLifetimeS: 600, relayOnly: true } });
    const first = await TestClient.join(server.wsUrl, 'peer-a', 'ice');
    const welcome = first.all('welcome')[0]!;
    const peerId = testIdentity('peer-a').peerId;
    expect(welcome.iceTransportPolicy).toBe('relay');
    const turn = welcome.iceServers![1]!;
    expect(welcome.iceServers![0]).toEqual({ urls: ['stun:127.0.0.1:3478'] });
    const expiry = Number(turn.username!.split(':')[0]);
    expect(turn.username).toBe(`${expiry}:${peerId}`);
    expect(Math.abs(expiry - (Date.now() / 1000 + 600))).toBeLessThan(5);
    expect(turn.credential).toBe(turnCredential('k', peerId, expiry).credential);
    // Another peer gets its own.
    const other = await TestClient.join(server.wsUrl, 'peer-b', 'ice');
    expect(other.all('welcome')[0]!.iceServers![1]!.username).toMatch(new RegExp(`:${testIdentity('peer-b').peerId}$`));
    // The same peer reconnecting a second later gets a later expiry and another credential.
    await new Promise((r) => setTimeout(r, 1100));
    const again = await TestClient.join(server.wsUrl, 'peer-a', 'ice');
    const renewed = again.all('welcome')[0]!.iceServers![1]!;
    expect(Number(renewed.username!.split(':')[0])).toBeGreaterThan(expiry);
    expect(renewed.credential).not.toBe(turn.credential);
    await Promise.all([first.close(), other.close(), again.close()]);
  });

  it('sends a connected peer fresh credentials before its welcome\'s expire, again and again, and the mesh takes them', async () => {
    server = await startSignalingServer({ ice: { servers: ['turn:127.0.0.1:3478'], turnSecret: 'k', turnLifetimeS: 600, turnRenewMs: 1100 } });
    const peer = await TestClient.join(server.wsUrl, 'peer-a', 'ice');
    const peerId = testIdentity('peer-a').peerId;
    const expiryOf = (servers: { username?: string }[] | undefined) => Number(servers![0]!.username!.split(':')[0]);
    let last = expiryOf(peer.all('welcome')[0]!.iceServers);
    for (let i = 0; i < 2; i++) {
      const renewal = await peer.next('ice', () => true, 3000);
      const [turn] = renewal.iceServers;
      expect(expiryOf(renewal.iceServers)).toBeGreaterThan(last); // a second or more later
      expect(turn!.credential).toBe(turnCredential('k', peerId, expiryOf(renewal.iceServers)).credential);
      last = expiryOf(renewal.iceServers);
    }
    await peer.close();
    // A mesh hears the renewal through its signaling client.
    const mesh = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network: 'ice', capabilities: CAPS, autoConnect: false, identity: testIdentity('peer-m') });
    try {
      await mesh.start();
      const heard = await new Promise<{ username?: string }[]>((resolve) => mesh.signaling.once('ice', (ice) => resolve(ice.iceServers)));
      expect(heard[0]!.username).toMatch(new RegExp(`:${testIdentity('peer-m').peerId}$`));
    } finally {
      mesh.close();
    }
  });

  it('carries no ICE fields when none are configured, and a welcome with them parses (unknown fields are stripped)', async () => {
    server = await startSignalingServer();
    const c = await TestClient.join(server.wsUrl, 'peer-c', 'plain');
    const welcome = c.all('welcome')[0]!;
    expect(welcome).not.toHaveProperty('iceServers');
    expect(welcome).not.toHaveProperty('iceTransportPolicy');
    const withIce = { ...welcome, iceServers: [{ urls: ['turn:h:1'], username: '1:p', credential: 'c', extra: 1 }], iceTransportPolicy: 'relay' };
    expect(parseServerMessage(JSON.stringify(withIce))).toMatchObject({ ok: true, message: { iceServers: [{ urls: ['turn:h:1'], username: '1:p', credential: 'c' }] } });
    expect(parseServerMessage(JSON.stringify({ ...withIce, iceTransportPolicy: 'none' }))).toMatchObject({ ok: false, code: 'ERR_INVALID_MESSAGE' });
    expect(parseServerMessage(JSON.stringify({ ...withIce, iceServers: [{ urls: ['http://x'] }] }))).toMatchObject({ ok: false, code: 'ERR_INVALID_MESSAGE' });
    await c.close();
  });
});

describe('aigrid signal', () => {
  const BIN = fileURLToPath(new URL('../bin/aigrid.js', import.meta.url));
  /** Runs `aigrid signal` with args; resolves when it prints where it listens, or with how it exited. */
  function run(args: string[], env: Record<string, string> = {}) {
    const child = spawn(process.execPath, [BIN, 'signal', '--in-memory', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<{ code: number | null; err: string }>((resolve) => child.once('exit', (code) => resolve({ code, err })));
    const listening = new Promise<string>((resolve) =>
      child.stdout.on('data', (d) => {
        out += d;
        const m = / \((ws:\/\/[^)]+)\)/.exec(out);
        if (m) resolve(m[1]!);
      }),
    );
    return { child, exited, listening };
  }

  it('refuses a bad ICE option at start with the named error', async () => {
    const bad = await run(['--ice-server', 'turn:bad host', '--turn-secret', 'k']).exited;
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/ERR_INVALID_ARGUMENT: ICE server "turn:bad host"/);
    const noSecret = await run(['--ice-server', 'turn:127.0.0.1:3478']).exited;
    expect(noSecret.err).toMatch(/ERR_INVALID_ARGUMENT: .*--turn-secret or AIGRID_TURN_SECRET/);
  }, 30_000);

  it('hands out the servers of its flags, with the secret from the environment', async () => {
    const { child, listening, exited } = run(['--ice-server', 'stun:127.0.0.1:3478', '--ice-server', 'turn:127.0.0.1:3478?transport=tcp', '--turn-lifetime', '120', '--ice-relay-only'], { AIGRID_TURN_SECRET: 'from-env' });
    try {
      const url = await Promise.race([listening, exited.then((e) => Promise.reject(new Error(`exited: ${e.err}`)))]);
      const c = await TestClient.join(url, 'peer-d', 'cli');
      const welcome = c.all('welcome')[0]!;
      const peerId = testIdentity('peer-d').peerId;
      expect(welcome.iceTransportPolicy).toBe('relay');
      expect(welcome.iceServers![0]).toEqual({ urls: ['stun:127.0.0.1:3478'] });
      const turn = welcome.iceServers![1]!;
      expect(turn.urls).toEqual(['turn:127.0.0.1:3478?transport=tcp']);
      const expiry = Number(turn.username!.split(':')[0]);
      expect(Math.abs(expiry - (Date.now() / 1000 + 120))).toBeLessThan(5);
      expect(turn.credential).toBe(turnCredential('from-env', peerId, expiry).credential);
      await c.close();
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }, 30_000);
});
