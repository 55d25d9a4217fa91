// `aigrid start` (npm start): everything a new user needs in one process. The signaling server
// with the web app, the OpenAI gateway on the same port (/v1), and a built-in Node peer that serves
// a default model on the default network, so the Playground answers at once. The default model is
// SmolLM2-135M-Instruct from the hub when the hub answers; offline, the generated tiny checkpoint
// (random weights, said loudly) served from this process under /models/. The networks' owner is a
// key of its own (owner.key in the state folder) that this process only names, so a person's
// script connects with it to set policies while the built-in peer keeps serving.
import { existsSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createGatewayHandler } from '../gateway/index.ts';
import { defaultModelId } from '../grid/model-spec.ts';
import { DEFAULT_HF_BASE_URL } from '../model/checkpoint/source.ts';
import { connect, type ServeOptions } from '../sdk/node.ts';
import { defaultIdentityFile, readIdentityFile } from '../mesh/identity-file.ts';
import { isLoopbackAddress, PeerIdSchema } from '../../protocol/index.ts';
import { defaultStateDir } from '../../protocol/state-files.ts';
import { startSignalingServer } from '../../signaling/server.ts';
import { ICE_FLAGS, ICE_USAGE, iceOptionsOf } from '../../signaling/ice.ts';
import { showLiveStatus } from './live-status.ts';
import { modelFilesHandler } from './model-files.ts';
import { softwareAdapter } from './software-gpu.ts';
import { GATEWAY_LIMITS_FLAGS, gatewayLimitsOf } from './gateway.ts';
import { backendOption, identityOption, memoryOption, originsOption, portOption } from './options.ts';

export const HUB_MODEL = 'HuggingFaceTB/SmolLM2-135M-Instruct';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OFFLINE_MODEL_DIR = resolve(ROOT, 'test/.fixtures/tiny-smollm2');
/** The tiny BERT of npm run fixtures (random weights), offered for feature-extraction blocks. */
const DEMO_EMBEDDING_DIR = resolve(ROOT, 'test/.fixtures/bert-embed');
const RANDOM_NOTICE = 'Random weights (offline demo checkpoint): replies are random words, not language.';

const USAGE = `Usage: aigrid start [options]

Runs the signaling server with the web app, the OpenAI-compatible gateway (/v1) on the same port,
and a Node peer serving a default model on the default network.

Options:
  --host H            address to bind (env AIGRID_HOST; default 127.0.0.1)
  --port N            port (env AIGRID_PORT or PORT; default 8787)
  --network NAME      network of the built-in peer (default "default")
  --model M           default model: hub id, folder URL or local folder (env AIGRID_MODEL;
                      default ${HUB_MODEL} when the hub answers, else the offline random checkpoint)
  --memory-mb N       memory the built-in peer offers (default 2048)
  --no-peer           run no built-in peer (and serve no default model)
  --owner ID          the peer id that owns every network here: it alone sets policies and who may
                      serve (env AIGRID_OWNER; default the key owner.key in the state folder, made
                      on the first start; a script connects with loadIdentityFile(that path) to
                      act as the owner; aigrid id owner prints its id)
  --backend B         the built-in peer's backend: webgpu, cpu or auto (default auto: a hardware
                      GPU when Node has one, else the CPU)
  --data DIR          where the server keeps served models, network rules and reputations across
                      restarts (env AIGRID_DATA; default start/ in the state folder, AIGRID_STATE_DIR
                      or ~/.local/state/aigrid)
  --in-memory         keep nothing on disk
  --api-key K         require this bearer token on /v1 (env AIGRID_API_KEY)
  --allowed-origins O web pages allowed to use the server (/signal and /v1) besides loopback pages
                      and extensions: a comma-separated list of origins, or * for any (env
                      AIGRID_ALLOWED_ORIGINS; default none)
${ICE_USAGE}  --max-concurrent, --max-queue, --request-timeout, --shutdown-grace, --routes-per-second,
  --max-models, --model-idle   the gateway's limits, as for aigrid gateway (see its --help)
  -h, --help          show this help
`;

export async function runStartCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string', default: process.env.AIGRID_HOST ?? '127.0.0.1' },
      port: { type: 'string', default: process.env.AIGRID_PORT ?? process.env.PORT ?? '8787' },
      network: { type: 'string', default: 'default' },
      model: { type: 'string', default: process.env.AIGRID_MODEL },
      'memory-mb': { type: 'string', default: '2048' },
      'no-peer': { type: 'boolean', default: false },
      owner: { type: 'string', default: process.env.AIGRID_OWNER },
      data: { type: 'string', default: process.env.AIGRID_DATA },
      'in-memory': { type: 'boolean', default: false },
      backend: { type: 'string', default: 'auto' },
      'api-key': { type: 'string', default: process.env.AIGRID_API_KEY },
      'allowed-origins': { type: 'string', default: process.env.AIGRID_ALLOWED_ORIGINS },
      ...ICE_FLAGS,
      ...GATEWAY_LIMITS_FLAGS,
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const port = portOption(values.port);
  const memoryBudgetMB = memoryOption(values['memory-mb']);
  const backendChoice = backendOption(values.backend);
  const allowedOrigins = originsOption(values['allowed-origins']);
  const owner = await networkOwner(values.owner);

  const mounts: ((req: IncomingMessage, res: ServerResponse) => boolean)[] = [];
  const server = await startSignalingServer({
    host: values.host,
    port,
    staticDir: resolve(ROOT, 'dist/app'),
    mount: (req, res) => mounts.some((m) => m(req, res)),
    allowedOrigins,
    owner: owner.peerId,
    ice: iceOptionsOf(values),
    dataDir: values['in-memory'] ? undefined : (values.data ?? join(defaultStateDir(), 'start')),
    log: (line) => console.log(`${new Date().toISOString()} ${line}`),
  });
  const grid = await connect({ signal: server.wsUrl, network: values.network, identity: await identityOption(undefined, 'start'), peerIdentity: values['no-peer'] ? undefined : await identityOption(undefined, 'start-peer') });
  const gateway = createGatewayHandler(grid, { apiKey: values['api-key'], allowedOrigins, loopbackBound: isLoopbackAddress(values.host!), ...gatewayLimitsOf(values) });
  mounts.push(gateway);
  const embedding = existsSync(resolve(DEMO_EMBEDDING_DIR, 'config.json')) ? '/models/bert-embed' : undefined;
  if (embedding) mounts.push(modelFilesHandler(DEMO_EMBEDDING_DIR, embedding));

  let stopDisplay = () => {};
  let served = 'no model (--no-peer)';
  if (!values['no-peer']) {
    const model = await defaultModel(values.model, server.httpUrl);
    if (model.files) mounts.push(model.files);
    const backend = backendChoice === 'auto' && (await softwareAdapter()) ? 'cpu' : backendChoice;
    const contribution = await grid.contribute({ memoryBudgetMB, backend, models: [model.serve] });
    served = `${model.serve.modelId}${model.serve.notice ? `  ** ${model.serve.notice} **` : ''}`;
    stopDisplay = showLiveStatus(contribution);
  }
  console.log(
    [
      '',
      `AIGrid is running on network "${values.network}"`,
      `  web app        ${server.httpUrl}/  (Contribute, Playground, Network)`,
      `  OpenAI API     ${server.httpUrl}/v1`,
      `  signaling      ${server.wsUrl}`,
      `  default model  ${served}`,
      ...(embedding ? [`  embedding      ${server.httpUrl}${embedding}  (tiny BERT, random weights: name it in a pipeline block)`] : []),
      `  network owner  ${owner.peerId}${owner.key ? `, network owner key: ${owner.key}` : ' (--owner)'}`,
      '',
    ].join('\n'),
  );

  await new Promise<void>((done) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      console.log(`${signal}: stopping`);
      stopDisplay();
      // The gateway's running requests get its grace period before the grid and server close.
      void gateway.close().finally(() => {
        grid.close();
        server.close().then(done, done);
      });
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/**
 * The networks' owner: --owner, else the key owner.key in the state folder (made when missing),
 * read without being held, so a script can connect with it.
 */
async function networkOwner(given: string | undefined): Promise<{ peerId: string; key?: string }> {
  if (given) {
    if (!PeerIdSchema.safeParse(given).success) throw new Error(`--owner must be a peer id (aigrid id prints one), not ${JSON.stringify(given.slice(0, 80))} (see --help)`);
    return { peerId: given };
  }
  const key = defaultIdentityFile('owner');
  return { peerId: (await readIdentityFile(key)).peerId, key };
}

interface DefaultModel {
  serve: ServeOptions & { modelId: string };
  /** Serves a local folder under /models/<id> on the server's port. */
  files?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

async function defaultModel(choice: string | undefined, httpUrl: string): Promise<DefaultModel> {
  if (choice) return localOrRemote(choice, httpUrl);
  if (await hubAnswers()) return { serve: { source: HUB_MODEL, modelId: basename(HUB_MODEL), replication: 1 } };
  if (!existsSync(resolve(OFFLINE_MODEL_DIR, 'config.json'))) {
    throw new Error(`the hub is not reachable and there is no offline checkpoint at ${OFFLINE_MODEL_DIR}: run npm run fixtures (npm start does)`);
  }
  console.log(`the hub (${DEFAULT_HF_BASE_URL}) did not answer: serving the offline random-weight checkpoint`);
  const model = localOrRemote(OFFLINE_MODEL_DIR, httpUrl, 'tiny-smollm2-random');
  model.serve.notice = RANDOM_NOTICE;
  return model;
}

function localOrRemote(choice: string, httpUrl: string, modelId?: string): DefaultModel {
  if (existsSync(choice) && statSync(choice).isDirectory()) {
    const id = modelId ?? defaultModelId(basename(resolve(choice)));
    const prefix = `/models/${encodeURIComponent(id)}`;
    return { serve: { source: `${httpUrl}${prefix}`, modelId: id, replication: 1 }, files: modelFilesHandler(resolve(choice), prefix) };
  }
  return { serve: { source: choice, modelId: modelId ?? defaultModelId(choice), replication: 1 } };
}

/** Whether the hub serves the default model's config within a few seconds. */
async function hubAnswers(): Promise<boolean> {
  try {
    const res = await fetch(`${DEFAULT_HF_BASE_URL}/${HUB_MODEL}/resolve/main/config.json`, { method: 'HEAD', signal: AbortSignal.timeout(4000), redirect: 'follow' });
    return res.ok;
  } catch {
    return false;
  }
}
