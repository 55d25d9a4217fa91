// Behind a reverse proxy every socket comes from the proxy's address. A trusted proxy's
// X-Forwarded-For names the client, so the per-address cap holds per client, not for all of them
// together; the same header from an untrusted address counts for nothing.
import { describe, expect, it } from 'vitest';
import { useSignalingServer } from './helpers/server-fixture.ts';
import { TestClient } from './helpers/ws-client.ts';
import { startSignalingServer } from '../signaling/server.ts';

const fixture = useSignalingServer();

const through = (url: string, forwardedFor: string) => TestClient.open(url, { headers: { 'X-Forwarded-For': forwardedFor } }).then(fixture.track);

describe('signaling server behind a trusted proxy', () => {
  it('counts connections per forwarded client address, and the proxy itself only when the header is missing', async () => {
    const server = await fixture.start({ maxConnectionsPerIp: 1, trustedProxies: ['127.0.0.1'] });
    const a = await through(server.wsUrl, '198.51.100.7');
    await a.next('challenge');
    // A chain through another proxy: the right-most address that is not a trusted proxy counts.
    const b = await through(server.wsUrl, '203.0.113.9, 198.51.100.8');
    await b.next('challenge');
    const again = await through(server.wsUrl, '198.51.100.7');
    expect((await again.next('error')).code).toBe('ERR_TOO_MANY_CONNECTIONS');
    // A forged chain that ends in garbage counts as the proxy.
    const forged = await through(server.wsUrl, '198.51.100.9, not-an-address');
    await forged.next('challenge');
    const second = await through(server.wsUrl, 'also not');
    expect((await second.next('error')).code).toBe('ERR_TOO_MANY_CONNECTIONS');
  });

  it('ignores the header from an address it does not trust', async () => {
    const server = await fixture.start({ maxConnectionsPerIp: 1 });
    const a = await through(server.wsUrl, '198.51.100.7');
    await a.next('challenge');
    const b = await through(server.wsUrl, '198.51.100.8');
    expect((await b.next('error')).code).toBe('ERR_TOO_MANY_CONNECTIONS');
  });

  it('refuses a trusted proxy that is not an IP address', async () => {
    await expect(startSignalingServer({ trustedProxies: ['proxy.example'] })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});
