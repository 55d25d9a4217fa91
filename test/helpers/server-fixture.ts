// A signaling server per test with the clients it opened, all closed after each test.
import { afterEach, expect } from 'vitest';
import { startSignalingServer, type SignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';
import { TestClient } from './ws-client.ts';

export function useSignalingServer() {
  let server: SignalingServer | null = null;
  let clients: TestClient[] = [];

  afterEach(async () => {
    for (const c of clients) expect(c.invalid).toEqual([]);
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
    await server?.close();
    server = null;
  });

  const current = (): SignalingServer => {
    if (!server) throw new Error('start() the server first');
    return server;
  };
  /** Keeps a client for closing after the test. */
  const track = (client: TestClient): TestClient => {
    clients.push(client);
    return client;
  };
  return {
    get server(): SignalingServer {
      return current();
    },
    track,
    start: async (options: SignalingServerOptions = {}): Promise<SignalingServer> => {
      server = await startSignalingServer({ heartbeatMs: 60_000, ...options });
      return server;
    },
    join: async (peerId: string, network = 'net'): Promise<TestClient> =>
      track(await TestClient.join(current().wsUrl, peerId, network)),
    open: async (): Promise<TestClient> => track(await TestClient.open(current().wsUrl)),
  };
}
