// `aigrid signal`: runs the signaling server until SIGINT or SIGTERM.
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AigridError, parseAllowedOrigins, PeerIdSchema } from '../protocol/index.ts';
import { join } from 'node:path';
import { defaultStateDir } from '../protocol/state-files.ts';
import { startSignalingServer } from './server.ts';
import { ICE_FLAGS, ICE_USAGE, iceOptionsOf } from './ice.ts';

const USAGE = `Usage: aigrid signal [options]

Runs the AIGrid signaling server: WebSocket signaling on /signal, /healthz, /api/networks,
and the built web app.

Options:
  --host <host>         address to bind (env AIGRID_HOST; default 127.0.0.1)
  --port <port>         port to bind, 0 for any free one (env AIGRID_PORT or PORT; default 8787)
  --heartbeat-ms <ms>   ping interval; a silent peer is dropped within twice this (default 5000)
  --static <dir>        built web app to serve (default dist/app of this checkout)
  --allowed-origins <o> web pages allowed to open /signal besides loopback pages and extensions:
                        comma-separated origins, or * for any (env AIGRID_ALLOWED_ORIGINS)
  --allowed-sources <p> URL prefixes served models may load weights from, besides https URLs and
                        hub ids (comma-separated; env AIGRID_ALLOWED_SOURCES)
${ICE_USAGE}  --owner <peer id>     the peer id (of your key) that owns every network here: it alone sets who
                        may serve, and may change or withdraw any model (env AIGRID_OWNER;
                        default: each network's first peer)
  --data <dir>          where served models, network rules, reputations and the ticket key
                        outlive a restart (env AIGRID_DATA; default signal/ in the state folder,
                        AIGRID_STATE_DIR or ~/.local/state/aigrid); one server per folder
  --in-memory           keep nothing on disk: a restart forgets every network
  --redis <url>         one of several signaling processes for the same networks: state shared in
                        this Redis (redis://host:port), no data folder (env AIGRID_REDIS)
  --max-peers <n>       peers one network may hold (env AIGRID_MAX_PEERS; default 10000)
  --trusted-proxy <ip>  a reverse proxy in front of the server (repeatable; env
                        AIGRID_TRUSTED_PROXIES, comma-separated): its connections are counted
                        per client address from X-Forwarded-For
  -h, --help            show this help
`;

const DEFAULT_STATIC_DIR = fileURLToPath(new URL('../dist/app', import.meta.url));

/** Resolves once the server has stopped after a signal. */
export async function runSignalCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'heartbeat-ms': { type: 'string' },
      static: { type: 'string' },
      'allowed-origins': { type: 'string' },
      'allowed-sources': { type: 'string' },
      ...ICE_FLAGS,
      owner: { type: 'string' },
      data: { type: 'string' },
      'in-memory': { type: 'boolean' },
      redis: { type: 'string' },
      'max-peers': { type: 'string' },
      'trusted-proxy': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const env = process.env;
  const host = values.host ?? env.AIGRID_HOST ?? '127.0.0.1';
  const port = integer('--port', values.port ?? env.AIGRID_PORT ?? env.PORT ?? '8787');
  const allowed = values['allowed-origins'] ?? env.AIGRID_ALLOWED_ORIGINS;
  const maxPeers = values['max-peers'] ?? env.AIGRID_MAX_PEERS;
  const heartbeatMs = values['heartbeat-ms'] === undefined ? undefined : integer('--heartbeat-ms', values['heartbeat-ms']);
  const server = await startSignalingServer({
    host,
    port,
    heartbeatMs,
    staticDir: values.static ?? DEFAULT_STATIC_DIR,
    allowedOrigins: allowed ? parseAllowedOrigins(allowed) : undefined,
    allowedSources: listOption(values['allowed-sources'] ?? env.AIGRID_ALLOWED_SOURCES),
    ice: iceOptionsOf(values, env),
    owner: ownerOption(values.owner ?? env.AIGRID_OWNER),
    maxPeersPerNetwork: maxPeers === undefined ? undefined : integer('--max-peers', maxPeers),
    trustedProxies: values['trusted-proxy'] ?? listOption(env.AIGRID_TRUSTED_PROXIES),
    redis: values.redis ?? (env.AIGRID_REDIS || undefined),
    dataDir: values['in-memory'] || values.redis || env.AIGRID_REDIS ? undefined : (values.data ?? env.AIGRID_DATA ?? join(defaultStateDir(), 'signal')),
    log: (line) => console.log(`${new Date().toISOString()} ${line}`),
  });
  console.log(`AIGrid signaling on ${server.httpUrl} (${server.wsUrl})${server.processId ? `, state in Redis (process ${server.processId})` : server.dataDir ? `, data in ${server.dataDir}` : ', nothing kept on disk'}`);

  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      console.log(`${signal}: closing the signaling server`);
      server.close().then(resolve, (err: unknown) => {
        console.error(err);
        resolve();
      });
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

function integer(name: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value)) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${name} must be a whole number, got ${JSON.stringify(text)}`);
  }
  return value;
}

function listOption(text: string | undefined): string[] | undefined {
  const items = text?.split(',').map((s) => s.trim()).filter(Boolean);
  return items?.length ? items : undefined;
}

function ownerOption(text: string | undefined): string | undefined {
  if (text === undefined || text === '') return undefined;
  if (!PeerIdSchema.safeParse(text).success) throw new AigridError('ERR_INVALID_ARGUMENT', `--owner must be a peer id (4-64 of A-Z a-z 0-9 _ -), got ${JSON.stringify(text.slice(0, 80))}`);
  return text;
}
