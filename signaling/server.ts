// The signaling server: one HTTP server for health, metrics, registry API and the web app, with
// the WebSocket endpoint /signal on the same port.
import { createServer } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import {
  AigridError,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_MAX_CONNECTIONS_PER_IP,
  DEFAULT_FULL_DIRECTORY_PEERS,
  DEFAULT_MAX_PEERS_PER_NETWORK,
  DEFAULT_MESSAGES_PER_SECOND,
  HARD_SIGNAL_FRAME_BYTES,
  isLoopbackAddress,
  ephemeralIdentity,
  MAX_SIGNAL_FRAME_BYTES,
  originAllowed,
  type AllowedOrigins,
} from '../protocol/index.ts';
import { clientAddress } from './client-address.ts';
import { createHttpHandler, type HttpMount } from './http.ts';
import type { SourcePolicy } from './sources.ts';
import { HEARTBEAT_SLICES, Hub } from './hub.ts';
import { MemoryRegistry, type RegistryStore } from './registry.ts';
import { DataDir } from './data-dir.ts';
import { RedisCluster } from './redis-cluster.ts';
import { iceForPeers, type IceOptions } from './ice.ts';
import { DEFAULT_UNHEALTHY_AFTER_MS } from './coordinator.ts';
import { SignalingMetrics } from './metrics.ts';
import type { WorkerSandboxStats } from '../policy/worker-sandbox.ts';

export const SIGNAL_PATH = '/signal';
const DEFAULT_HELLO_TIMEOUT_MS = 10_000;

export interface SignalingServerOptions {
  host?: string;
  /** 0 (the default) picks a free port; the CLI defaults to 8787. */
  port?: number;
  heartbeatMs?: number;
  /** Close sockets that have not said hello after this long (default 10 s). */
  helloTimeoutMs?: number;
  maxPeersPerNetwork?: number;
  /** Networks up to this size keep a complete directory; larger ones are looked up (default 64). */
  fullDirectoryPeers?: number;
  maxConnectionsPerIp?: number;
  messagesPerSecond?: number;
  /** Frames above this (up to HARD_SIGNAL_FRAME_BYTES) are answered ERR_FRAME_TOO_LARGE and dropped. */
  maxFrameBytes?: number;
  /** The built web app; without it, pages answer 404 with a hint to build. */
  staticDir?: string;
  store?: RegistryStore;
  /**
   * A folder where served models, network rules, reputations and the ticket key outlive a restart
   * (data-dir.ts); without it the server keeps them in memory only.
   */
  dataDir?: string;
  /**
   * A Redis URL: this process is one of several serving the same networks, sharing their state
   * there (redis-cluster.ts) instead of a data folder.
   */
  redis?: string;
  /** With `redis`: how long a dead process's leases and peers last (default 5 s). */
  redisLeaseMs?: number;
  /** How long a restarted server keeps restored placements while their peers come back (default 15 s). */
  recoveryMs?: number;
  /**
   * A serving peer without a status report for this long is left out of routes until it reports
   * again (default 90 s: nine of the peers' 10 s report intervals).
   */
  unhealthyAfterMs?: number;
  /**
   * More HTTP routes on the same port, tried before the server's own: answers true when it took
   * the request (e.g. `aigrid start` mounts the OpenAI gateway on /v1). The server imports none.
   */
  mount?: HttpMount;
  /**
   * Page origins that may open /signal besides loopback pages and extensions (`*`: any). A server
   * on a public address also accepts pages it served itself. See protocol/origins.ts.
   */
  allowedOrigins?: AllowedOrigins;
  /**
   * URL prefixes served models may load weights from, besides https URLs and Hugging Face ids (and
   * plain http on loopback hosts when the server itself is bound to loopback).
   */
  allowedSources?: readonly string[];
  /**
   * Addresses of reverse proxies in front of the server: connections through them are counted
   * under the client address they name in X-Forwarded-For (see client-address.ts).
   */
  trustedProxies?: readonly string[];
  /** The peer id (of a key) that owns every network on this server; else each network's first peer. */
  owner?: string;
  /** STUN/TURN servers handed to every peer in its welcome, TURN credentials minted per peer (ice.ts). */
  ice?: IceOptions;
  log?: (line: string) => void;
}

export interface SignalingServer {
  httpUrl: string;
  wsUrl: string;
  port: number;
  /** The data folder, when the server keeps its state on disk. */
  dataDir?: string;
  /** With `redis`: this process's id among the deployment's processes. */
  processId?: string;
  /** What /metrics exposes; policy code reports its failures here (onPolicyFailure). */
  metrics: SignalingMetrics;
  /** The worker threads running networks' server-hook policies (undefined until one needed them). */
  policySandbox(): WorkerSandboxStats | undefined;
  /** Tells peers the server stops (leave reason 'shutdown'), closes every socket and the port. */
  close(): Promise<void>;
}

export async function startSignalingServer(options: SignalingServerOptions = {}): Promise<SignalingServer> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `port must be an integer in 0..65535, got ${port}`);
  }
  const heartbeatMs = positive('heartbeatMs', options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
  const maxFrameBytes = positive('maxFrameBytes', options.maxFrameBytes ?? MAX_SIGNAL_FRAME_BYTES);
  if (maxFrameBytes > HARD_SIGNAL_FRAME_BYTES) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `maxFrameBytes may not exceed ${HARD_SIGNAL_FRAME_BYTES}`);
  }
  const log = options.log ?? (() => {});
  for (const proxy of options.trustedProxies ?? []) {
    if (!isIP(proxy)) throw new AigridError('ERR_INVALID_ARGUMENT', `a trusted proxy is an IP address, got ${JSON.stringify(proxy.slice(0, 80))}`);
  }
  const trustedProxies = new Set(options.trustedProxies ?? []);
  const ice = iceForPeers(options.ice); // a bad URL or a missing secret is refused before anything starts
  const loopbackBound = isLoopbackAddress(host);
  const sources: SourcePolicy = { loopbackBound, allowed: options.allowedSources ?? [] };
  const cluster = options.redis === undefined ? undefined : await RedisCluster.open({ url: options.redis, leaseMs: options.redisLeaseMs, log });
  const store = options.store ?? cluster?.registry ?? new MemoryRegistry();
  const data = options.dataDir === undefined || cluster ? undefined : await DataDir.open(options.dataDir, log);
  const unhealthyAfterMs = positive('unhealthyAfterMs', options.unhealthyAfterMs ?? DEFAULT_UNHEALTHY_AFTER_MS);
  const metrics: SignalingMetrics = new SignalingMetrics({
    networks: () => store.networks(),
    peers: (network) => store.list(network),
    coverage: (network) => hub.coverage(network),
    serving: (network) => hub.serving(network),
    unhealthyAfterMs,
  });
  const hub: Hub = new Hub({
    // The coordinator counts routes and reports and applies the health bound; the hub counts verdicts.
    metrics,
    unhealthyAfterMs,
    store,
    // Kept in the data folder, so tickets and the key peers learned survive a restart; else a
    // fresh key per start (tickets last minutes, and peers learn the key anew in each welcome).
    serverKey: cluster?.serverKey ?? data?.serverKey ?? ephemeralIdentity(),
    data,
    cluster,
    recoveryMs: options.recoveryMs,
    heartbeatMs,
    helloTimeoutMs: positive('helloTimeoutMs', options.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS),
    maxFrameBytes,
    maxPeersPerNetwork: positive('maxPeersPerNetwork', options.maxPeersPerNetwork ?? DEFAULT_MAX_PEERS_PER_NETWORK),
    fullDirectoryPeers: options.fullDirectoryPeers ?? DEFAULT_FULL_DIRECTORY_PEERS,
    maxConnectionsPerIp: positive('maxConnectionsPerIp', options.maxConnectionsPerIp ?? DEFAULT_MAX_CONNECTIONS_PER_IP),
    messagesPerSecond: positive('messagesPerSecond', options.messagesPerSecond ?? DEFAULT_MESSAGES_PER_SECOND),
    sources,
    owner: options.owner,
    ice,
    log,
  });

  const models = (network: string) => hub.coverage(network);
  const serving = (network: string) => hub.serving(network);
  const rules = (network: string) => hub.rules(network);
  const trust = (network: string) => hub.trust(network);
  const routes = (network: string) => hub.routes(network);
  const http = createServer(createHttpHandler({ store, models, serving, rules, trust, routes, metrics, staticDir: options.staticDir, startedAt: Date.now(), log, mount: options.mount }));
  // Larger frames are not even buffered: ws closes the socket with 1009 on its own.
  const wss = new WebSocketServer({
    server: http,
    path: SIGNAL_PATH,
    maxPayload: HARD_SIGNAL_FRAME_BYTES,
    // A page of a foreign origin never gets a socket: a site a person visits cannot drive this server.
    verifyClient: ({ origin, req }, done) => {
      if (originAllowed({ origin: origin || undefined, host: req.headers.host, allowed: options.allowedOrigins, loopbackBound })) return done(true);
      log(`refused /signal from origin ${origin.slice(0, 200)}`);
      done(false, 403, 'ERR_PERMISSION_DENIED: this origin may not use the signaling server (see --allowed-origins)');
    },
  });
  wss.on('connection', (ws, req) => hub.accept(ws, clientAddress(req, trustedProxies)));
  wss.on('error', (err) => log(`websocket server error: ${err.message}`));

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, host, () => {
      http.off('error', reject);
      resolve();
    });
  }).catch(async (err: unknown) => {
    await data?.close(); // the folder is free for the next attempt
    await cluster?.close();
    throw err;
  });
  http.on('error', (err) => log(`http server error: ${err.message}`));
  const timer = setInterval(() => hub.tick(), heartbeatMs / HEARTBEAT_SLICES);
  timer.unref();

  const bound = (http.address() as AddressInfo).port;
  const hostPart = host.includes(':') ? `[${host}]` : host;
  // The files this server offers itself (e.g. `aigrid start`'s /models/) are always allowed.
  sources.allowed = [...sources.allowed!, `http://${hostPart}:${bound}/`];
  let closing: Promise<void> | null = null;
  return {
    httpUrl: `http://${hostPart}:${bound}`,
    wsUrl: `ws://${hostPart}:${bound}${SIGNAL_PATH}`,
    port: bound,
    dataDir: data?.dir,
    processId: cluster?.id,
    metrics,
    policySandbox: () => hub.policySandbox(),
    close: () =>
      (closing ??= (async () => {
        clearInterval(timer);
        await hub.shutdown();
        await data?.close();
        await cluster?.close();
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        await new Promise<void>((resolve) => {
          http.close(() => resolve());
          http.closeAllConnections();
        });
      })()),
  };
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${name} must be a positive number, got ${value}`);
  }
  return value;
}
export type { HttpMount } from './http.ts';
