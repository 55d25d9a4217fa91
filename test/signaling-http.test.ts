import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useSignalingServer } from './helpers/server-fixture.ts';
import { CAPS, TestClient } from './helpers/ws-client.ts';
import { idOf } from './helpers/identities.ts';

const fixture = useSignalingServer();
const { start, join } = fixture;

describe('signaling server: http and shutdown', () => {
  it('serves /healthz and the network API', async () => {
    await start();
    await join('peer-a', 'alpha');
    await join('peer-b', 'alpha');
    await join('peer-c', 'beta');
    const health = await fetch(`${fixture.server.httpUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(health.headers.get('content-type')).toMatch(/application\/json/);
    expect(await health.json()).toMatchObject({ ok: true, networks: 2, peers: 3 });

    const list = (await (await fetch(`${fixture.server.httpUrl}/api/networks`)).json()) as {
      networks: { network: string; peers: { peerId: string }[] }[];
    };
    const summary = list.networks.map((n) => [n.network, n.peers.map((p) => p.peerId)]);
    expect(summary).toEqual([
      ['alpha', [idOf('peer-a'), idOf('peer-b')]],
      ['beta', [idOf('peer-c')]],
    ]);
    const one = await fetch(`${fixture.server.httpUrl}/api/networks/beta`);
    expect(await one.json()).toMatchObject({ network: 'beta', peers: [{ peerId: idOf('peer-c'), capabilities: CAPS }] });
    const missing = await fetch(`${fixture.server.httpUrl}/api/networks/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toHaveProperty('error');
    expect((await fetch(`${fixture.server.httpUrl}/api/networks`, { method: 'POST' })).status).toBe(405);
  });

  it('serves static files from staticDir, and a build hint without one', async () => {
    const dir = mkdtempSync(joinPath(tmpdir(), 'aigrid-static-'));
    try {
      writeFileSync(joinPath(dir, 'index.html'), '<!doctype html><title>AIGrid</title>');
      writeFileSync(joinPath(dir, 'app.js'), 'console.log(1)');
      writeFileSync(joinPath(dir, '.secret'), 'nope');
      await start({ staticDir: dir });
      const index = await fetch(`${fixture.server.httpUrl}/`);
      expect(index.status).toBe(200);
      expect(index.headers.get('content-type')).toMatch(/text\/html/);
      expect(await index.text()).toContain('AIGrid');
      expect(await (await fetch(`${fixture.server.httpUrl}/app.js`)).text()).toBe('console.log(1)');
      expect((await fetch(`${fixture.server.httpUrl}/missing/page`)).status).toBe(404);
      expect((await fetch(`${fixture.server.httpUrl}/.secret`)).status).toBe(404);
      expect((await fetch(`${fixture.server.httpUrl}/%2esecret`)).status).toBe(404);
      await fixture.server.close();

      await start({ staticDir: joinPath(dir, 'absent') });
      const hint = await fetch(`${fixture.server.httpUrl}/`);
      expect(hint.status).toBe(404);
      expect(await hint.text()).toContain('npm run build');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tells joined peers on close that the server shuts down', async () => {
    await start();
    const a = await join('peer-a');
    const b = await join('peer-b');
    const closing = fixture.server.close();
    expect(await a.next('leave')).toEqual({ type: 'leave', peerId: idOf('peer-a'), reason: 'shutdown' });
    expect((await b.closed).code).toBe(1001);
    await closing;
    expect(a.all('leave')).toHaveLength(1);
  });
});
