// The gateway on a port of its own (`aigrid gateway`); `aigrid start` mounts the same handler on
// the signaling server's port instead.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AigridError } from '../../protocol/index.ts';
import { ApiError } from './errors.ts';
import { createGatewayHandler, type GatewayGrid, type GatewayOptions } from './handler.ts';
import { sendError } from './respond.ts';

export interface StartGatewayOptions extends GatewayOptions {
  grid: GatewayGrid;
  /** Default 127.0.0.1: only this machine; another address exposes the grid to its network. */
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
}

export interface Gateway {
  /** The base URL OpenAI clients take, e.g. http://127.0.0.1:8788/v1. */
  url: string;
  port: number;
  /**
   * Shuts down gracefully: new requests are answered 503 ERR_SERVER_SHUTDOWN, running ones get
   * `graceMs` (default the shutdownGraceMs option) to finish and then end with that error; then it
   * stops listening and drops the connections left. Safe twice.
   */
  close(graceMs?: number): Promise<void>;
}

export async function startGateway(options: StartGatewayOptions): Promise<Gateway> {
  const { grid, host = '127.0.0.1', port = 0, ...rest } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `port must be an integer in 0..65535, got ${port}`);
  }
  const handle = createGatewayHandler(grid, rest);
  const server = createServer((req, res) => {
    if (!handle(req, res)) sendError(res, new ApiError(404, `Invalid URL (${req.method} ${(req.url ?? '').slice(0, 200)}); the API is under /v1.`, 'unknown_url'));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => rest.log?.(`gateway server error: ${err.message}`));
  const bound = (server.address() as AddressInfo).port;
  const hostPart = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${hostPart}:${bound}/v1`,
    port: bound,
    // Listening goes on through the grace period, so clients hear 503 rather than a refused connection.
    close: (graceMs) =>
      (closing ??= handle.close(graceMs).then(
        () =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      )),
  };
}
