// Attacks on a grid open to strangers, each reproduced against the real part and shown refused or
// contained. (The identity, ticket, verification and amplification attacks join this file as
// those defences land.)
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startModelFileServer, type ModelFileServer } from '../client/cli/model-files.ts';
import { encodeFrame, FrameReassembler, FrameType } from '../protocol/index.ts';
import { startSignalingServer } from '../signaling/server.ts';

describe('the model-file server of aigrid serve / start', () => {
  let files: ModelFileServer;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aigrid-files-'));
    mkdirSync(join(dir, 'model'));
    mkdirSync(join(dir, 'model', '.git'));
    writeFileSync(join(dir, 'model', 'config.json'), '{"ok":true}');
    writeFileSync(join(dir, 'model', '.env'), 'SECRET=1');
    writeFileSync(join(dir, 'model', '.git', 'config'), '[core]');
    writeFileSync(join(dir, 'outside.txt'), 'outside');
    files = await startModelFileServer(join(dir, 'model'), 'm');
  });
  afterAll(async () => {
    await files?.close();
  });

  it('serves the folder and never a dotfile or anything outside it', async () => {
    const get = async (path: string) => {
      const res = await fetch(files.url + path);
      return [res.status, await res.text()] as const;
    };
    expect(await get('/config.json')).toEqual([200, '{"ok":true}']);
    for (const path of ['/.env', '/.git/config', '/%2eenv', '/%2Egit/config', '/sub/../.env', '/..%2foutside.txt', '/%2e%2e/outside.txt', '/x/%2e%2e/%2e%2e/outside.txt']) {
      const [status, body] = await get(path);
      expect([path, status]).toEqual([path, 404]);
      expect(body).not.toMatch(/SECRET|core|outside/);
    }
  });
});

describe('the frame reassembler', () => {
  it('holds only the bytes received, whatever length a header announces', () => {
    const reassembler = new FrameReassembler();
    const payload = new Uint8Array(1 << 20).map((_, i) => i & 0xff);
    const chunks = encodeFrame(FrameType.data, 9, payload, 16 * 1024 + 12);
    // A header that announces 64 MiB and sends 16 bytes costs 16 bytes, not 64 MiB.
    const liar = new Uint8Array(12 + 16);
    liar.set(chunks[0]!.subarray(0, 12));
    new DataView(liar.buffer).setUint32(8, 64 * 1024 * 1024 - 1, true);
    expect(reassembler.push(liar)).toBeNull();
    expect(reassembler.heldBytes).toBe(16);
    // A new frame id is an interleaving error: the liar's frame is dropped and nothing is held.
    expect(() => reassembler.push(chunks[0]!)).toThrow(expect.objectContaining({ code: 'ERR_FRAME_INTERLEAVED' }));
    expect(reassembler.heldBytes).toBe(0);
    // An honest frame grows as it arrives and comes out whole.
    let held = 0;
    let frame = null;
    for (const chunk of chunks) {
      frame = reassembler.push(chunk);
      if (!frame) {
        expect(reassembler.heldBytes).toBeGreaterThanOrEqual(held);
        expect(reassembler.heldBytes).toBeLessThanOrEqual(2 * chunks.indexOf(chunk) * 16 * 1024 + 16 * 1024);
        held = reassembler.heldBytes;
      }
    }
    expect(frame?.payload).toEqual(payload);
    expect(reassembler.heldBytes).toBe(0);
  });
});

describe('web pages of other sites', () => {
  /** The HTTP status of a WebSocket upgrade to /signal from a page of `origin` (101 when it opens). */
  function upgrade(url: string, origin?: string, host?: string): Promise<number> {
    return new Promise((resolve) => {
      const ws = new WebSocket(url, { origin, headers: host ? { host } : {} });
      ws.on('open', () => {
        ws.close();
        resolve(101);
      });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => resolve(0));
    });
  }

  it('cannot open /signal on a loopback server; Node programs, loopback pages and named origins can', async () => {
    const server = await startSignalingServer();
    const open = await startSignalingServer({ allowedOrigins: ['https://grid.example'] });
    try {
      expect(await upgrade(server.wsUrl)).toBe(101); // no Origin: a Node program
      expect(await upgrade(server.wsUrl, 'http://127.0.0.1:5173')).toBe(101);
      expect(await upgrade(server.wsUrl, 'http://localhost:8787')).toBe(101);
      expect(await upgrade(server.wsUrl, 'chrome-extension://abcdefghijklmnop')).toBe(101);
      expect(await upgrade(server.wsUrl, 'https://evil.example')).toBe(403);
      expect(await upgrade(server.wsUrl, 'null')).toBe(403);
      // DNS rebinding: the page's host resolves to 127.0.0.1, but its Origin still names it.
      expect(await upgrade(server.wsUrl, 'http://rebind.example:8787', 'rebind.example:8787')).toBe(403);
      expect(await upgrade(open.wsUrl, 'https://grid.example')).toBe(101);
      expect(await upgrade(open.wsUrl, 'https://evil.example')).toBe(403);
    } finally {
      await server.close();
      await open.close();
    }
  });
});
