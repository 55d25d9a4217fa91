// `aigrid gateway`: joins a network as a client and answers OpenAI's HTTP API over it, so any
// OpenAI client (set its base URL to the one printed) uses the models the network serves.
import { parseArgs } from 'node:util';
import { startGateway, type GatewayOptions } from '../gateway/index.ts';
import { settingsOf } from '../gateway/settings.ts';
import { connect } from '../sdk/node.ts';
import { isLoopbackAddress } from '../../protocol/index.ts';
import { identityOption, originsOption, portOption, signalOption } from './options.ts';

export const DEFAULT_GATEWAY_PORT = 8788;

/** The gateway's limits as flags; `aigrid start` takes the same ones for its gateway. */
export const GATEWAY_LIMITS_USAGE = `  --max-concurrent N   completions generating at once (default 16)
  --max-queue N        completions waiting for a turn (default 64); more are answered 429 with Retry-After
  --request-timeout S  longest a request may take, waiting included, in seconds (default 120);
                       then 504, or an error event on a stream
  --shutdown-grace S   on SIGINT/SIGTERM, seconds running requests get to finish (default 10)
  --routes-per-second R  generations started per second (default: below the signaling server's
                       route and message rates, read from its welcome)
  --max-models N       models whose client side (tokenizer, head, routes) is kept (default 8)
  --model-idle S       seconds after which an unused model's client side is let go (default 600)
`;

const USAGE = `Usage: aigrid gateway [options]

Serve an OpenAI-compatible HTTP API over an AIGrid network: GET /v1/models, GET /v1/models/ID,
POST /v1/chat/completions and POST /v1/completions (streamed as server-sent events when asked).
The gateway joins the network as a client; any OpenAI client works with its base URL set to the
URL printed at start. It keeps the tokenizer and the model's head, so prompts never reach peers.

Options:
  --signal URL      signaling server (env AIGRID_SIGNAL; default ws://127.0.0.1:8787/signal); several, comma-separated,
                    are used in turn (signaling processes sharing a Redis)
  --network NAME    network to join (env AIGRID_NETWORK; default "default")
  --host H          address to listen on (env AIGRID_GATEWAY_HOST; default 127.0.0.1)
  --port N          port to listen on (env AIGRID_GATEWAY_PORT; default ${DEFAULT_GATEWAY_PORT}; 0 picks a free one)
  --api-key K       require "Authorization: Bearer K" on every request (env AIGRID_API_KEY;
                    default none: anyone who can reach the port may use the network)
  --allowed-origins O  web pages allowed to call it besides loopback pages and extensions: a
                    comma-separated list of origins, or * for any (env AIGRID_ALLOWED_ORIGINS)
${GATEWAY_LIMITS_USAGE}  -h, --help        show this help
`;

export const GATEWAY_LIMITS_FLAGS = {
  'max-concurrent': { type: 'string' },
  'max-queue': { type: 'string' },
  'request-timeout': { type: 'string' },
  'shutdown-grace': { type: 'string' },
  'routes-per-second': { type: 'string' },
  'max-models': { type: 'string' },
  'model-idle': { type: 'string' },
} as const;

type LimitsFlags = Partial<Record<keyof typeof GATEWAY_LIMITS_FLAGS, string>>;

/** The flags given, as gateway options (the gateway checks their ranges and names the option). */
export function gatewayLimitsOf(values: LimitsFlags): GatewayOptions {
  const options: GatewayOptions = {};
  const num = (flag: keyof LimitsFlags, scale = 1): number | undefined => {
    const text = values[flag];
    if (text === undefined) return undefined;
    const value = Number(text);
    if (text.trim() === '' || !Number.isFinite(value)) throw new Error(`--${flag} must be a number, not ${JSON.stringify(text)} (see --help)`);
    return value * scale;
  };
  options.maxConcurrent = num('max-concurrent');
  options.maxQueued = num('max-queue');
  options.requestTimeoutMs = num('request-timeout', 1000);
  options.shutdownGraceMs = num('shutdown-grace', 1000);
  options.routesPerSecond = num('routes-per-second');
  options.maxModels = num('max-models');
  options.modelIdleMs = num('model-idle', 1000);
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
}

export async function runGatewayCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      signal: { type: 'string', default: process.env.AIGRID_SIGNAL ?? 'ws://127.0.0.1:8787/signal' },
      network: { type: 'string', default: process.env.AIGRID_NETWORK ?? 'default' },
      host: { type: 'string', default: process.env.AIGRID_GATEWAY_HOST ?? '127.0.0.1' },
      port: { type: 'string', default: process.env.AIGRID_GATEWAY_PORT ?? String(DEFAULT_GATEWAY_PORT) },
      'api-key': { type: 'string', default: process.env.AIGRID_API_KEY },
      'allowed-origins': { type: 'string', default: process.env.AIGRID_ALLOWED_ORIGINS },
      ...GATEWAY_LIMITS_FLAGS,
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const port = portOption(values.port);
  const apiKey = values['api-key'] || undefined;
  const allowedOrigins = originsOption(values['allowed-origins']);
  const limits = gatewayLimitsOf(values);
  settingsOf(limits); // a value out of range is refused before joining the network
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const grid = await connect({ signal: signalOption(values.signal), network: values.network!, identity: await identityOption(undefined, 'gateway') });
  let gateway;
  try {
    const loopbackBound = isLoopbackAddress(values.host!);
    gateway = await startGateway({ grid, host: values.host, port, apiKey, allowedOrigins, loopbackBound, ...limits, log: (line) => process.stderr.write(`${line}\n`) });
  } catch (err) {
    grid.close();
    throw err;
  }
  // Requests running get the grace period to finish; the grid closes after them.
  const stop = () => {
    log('stopping: running requests get the grace period to finish');
    void gateway.close().finally(() => {
      grid.close();
      process.exit(0);
    });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  log(`joined network ${grid.network} as ${grid.peerId}`);
  if (!apiKey && !isLoopbackAddress(values.host!)) log(`warning: listening on ${values.host} without --api-key: anyone who can reach it may use the network`);
  log(`OpenAI-compatible API at ${gateway.url}`);
}

