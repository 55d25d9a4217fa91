// `aigrid gateway`: joins a network as a client and answers OpenAI's HTTP API over it, so any
// OpenAI client (set its base URL to the one printed) uses the models the network serves.
import { parseArgs } from 'node:util';
import { startGateway } from '../gateway/index.ts';
import { connect } from '../sdk/node.ts';
import { isLoopbackAddress } from '../../protocol/index.ts';
import { identityOption, originsOption, portOption } from './options.ts';

export const DEFAULT_GATEWAY_PORT = 8788;

const USAGE = `Usage: aigrid gateway [options]

Serve an OpenAI-compatible HTTP API over an AIGrid network: GET /v1/models, GET /v1/models/ID,
POST /v1/chat/completions and POST /v1/completions (streamed as server-sent events when asked).
The gateway joins the network as a client; any OpenAI client works with its base URL set to the
URL printed at start. It keeps the tokenizer and the model's head, so prompts never reach peers.

Options:
  --signal URL      signaling server (env AIGRID_SIGNAL; default ws://127.0.0.1:8787/signal)
  --network NAME    network to join (env AIGRID_NETWORK; default "default")
  --host H          address to listen on (env AIGRID_GATEWAY_HOST; default 127.0.0.1)
  --port N          port to listen on (env AIGRID_GATEWAY_PORT; default ${DEFAULT_GATEWAY_PORT}; 0 picks a free one)
  --api-key K       require "Authorization: Bearer K" on every request (env AIGRID_API_KEY;
                    default none: anyone who can reach the port may use the network)
  --allowed-origins O  web pages allowed to call it besides loopback pages and extensions: a
                    comma-separated list of origins, or * for any (env AIGRID_ALLOWED_ORIGINS)
  -h, --help        show this help
`;

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
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const grid = await connect({ signal: values.signal!, network: values.network!, identity: await identityOption(undefined, 'gateway') });
  let gateway;
  try {
    const loopbackBound = isLoopbackAddress(values.host!);
    gateway = await startGateway({ grid, host: values.host, port, apiKey, allowedOrigins, loopbackBound, log: (line) => process.stderr.write(`${line}\n`) });
  } catch (err) {
    grid.close();
    throw err;
  }
  const stop = () => {
    grid.close();
    void gateway.close().finally(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  log(`joined network ${grid.network} as ${grid.peerId}`);
  if (!apiKey && !isLoopbackAddress(values.host!)) log(`warning: listening on ${values.host} without --api-key: anyone who can reach it may use the network`);
  log(`OpenAI-compatible API at ${gateway.url}`);
}

