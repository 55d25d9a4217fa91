// `aigrid serve MODEL`: makes a model available on a network and serves it from this process, with
// a progress bar while its weights load and a live line of tokens/s. A local folder is offered to
// the network over HTTP from this process, so other peers (pages included) can load their layers;
// so is a local GGUF file (that file alone).
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isGgufRef } from '../../protocol/ids.ts';
import { defaultModelId, modelSpecFromCheckpoint, storedBytesOf } from '../grid/model-spec.ts';
import { openModelNode } from '../model/checkpoint/node.ts';
import { readConfig } from '../model/shard.ts';
import { describePlan, planServing } from './plan.ts';
import { connect, type ModelSpec } from '../sdk/node.ts';
import { showLiveStatus } from './live-status.ts';
import { startModelFileServer, type ModelFileServer } from './model-files.ts';
import { backendOption, identityOption, memoryOption, signalOption } from './options.ts';

const USAGE = `Usage: aigrid serve MODEL [options]

Make MODEL available on an AIGrid network and serve it from this process. MODEL is a Hugging Face
id (org/name), the URL of a folder holding config.json and *.safetensors, or a local folder (this
process then serves its files to the network over HTTP); or one GGUF file: a hub path
(org/name/file.gguf), its URL, or a local file (served alone, as a folder is). A GGUF file's
quantized weights stay quantized (--dtype applies to its F32/F16 tensors).

Options:
  --signal URL          signaling server (env AIGRID_SIGNAL; default ws://127.0.0.1:8787/signal); several, comma-separated,
                        are used in turn (signaling processes sharing a Redis)
  --network NAME        network (env AIGRID_NETWORK; default "default")
  --model-id ID         the name clients use (default: from MODEL)
  --memory-mb N         memory this process offers (default 2048)
  --replication N       peers that should hold each layer (default 2)
  --dtype D             how peers store weights: f32, f16, q8 or q4 (default f32)
  --light               let light clients send token ids (the end peers hold embedding and head)
  --base-url URL        a Hugging Face mirror (default https://huggingface.co)
  --revision REV        the model's revision on the hub (default main)
  --host H              address for a local folder's file server (default 127.0.0.1)
  --backend B           webgpu, cpu or auto (default auto)
  -h, --help            show this help
`;

export async function runServeCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      signal: { type: 'string', default: process.env.AIGRID_SIGNAL ?? 'ws://127.0.0.1:8787/signal' },
      network: { type: 'string', default: process.env.AIGRID_NETWORK ?? 'default' },
      'model-id': { type: 'string' },
      'memory-mb': { type: 'string', default: '2048' },
      replication: { type: 'string', default: '2' },
      dtype: { type: 'string', default: 'f32' },
      light: { type: 'boolean', default: false },
      'base-url': { type: 'string' },
      revision: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      backend: { type: 'string', default: 'auto' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length !== 1) {
    process.stdout.write(USAGE);
    if (!values.help) throw new Error('give exactly one MODEL (see --help)');
    return;
  }
  const memoryBudgetMB = memoryOption(values['memory-mb']);
  const replication = Number(values.replication);
  const dtype = values.dtype as ModelSpec['weightDtype'];
  const backend = backendOption(values.backend);
  if (!Number.isInteger(replication) || replication < 1) throw new Error('--replication must be a whole number >= 1');
  if (!['f32', 'f16', 'q8', 'q4'].includes(dtype)) throw new Error(`--dtype must be f32, f16, q8 or q4, not ${dtype}`);

  const model = positionals[0]!;
  let files: ModelFileServer | null = null;
  let source = model;
  let modelId = values['model-id'];
  if (existsSync(model) && statSync(model).isDirectory()) {
    modelId ??= defaultModelId(basename(resolve(model)));
    files = await startModelFileServer(resolve(model), modelId, values.host);
    source = files.url;
  } else if (isGgufRef(model) && existsSync(model) && statSync(model).isFile()) {
    const name = basename(model);
    modelId ??= defaultModelId(name.replace(/\.gguf$/i, ''));
    files = await startModelFileServer(dirname(resolve(model)), modelId, values.host, 0, name);
    source = `${files.url}/${encodeURIComponent(name)}`;
  }
  // The plan, from the model's config and index alone (nothing of the weights is read yet).
  try {
    const checkpoint = await openModelNode(source, { baseUrl: values['base-url'], revision: values.revision });
    const spec = modelSpecFromCheckpoint(checkpoint, { source, modelId, replication, weightDtype: dtype, light: values.light, baseUrl: values['base-url'], revision: values.revision });
    const plan = planServing(spec, readConfig(checkpoint), memoryBudgetMB, storedBytesOf(checkpoint));
    console.log(describePlan(spec, plan, memoryBudgetMB));
  } catch (err) {
    await files?.close();
    throw err;
  }
  const grid = await connect({ signal: signalOption(values.signal), network: values.network!, identity: await identityOption(undefined, 'serve'), peerIdentity: await identityOption(undefined, 'serve-peer') });
  try {
    const contribution = await grid.contribute({
      memoryBudgetMB,
      backend,
      models: [{ source, modelId, replication, weightDtype: dtype, light: values.light, baseUrl: values['base-url'], revision: values.revision }],
    });
    const spec = (await grid.models.list()).data.find((m) => m.spec.source === source)?.spec;
    console.log(`serving ${spec?.modelId ?? model} on network ${grid.network} (${values.signal}) as peer ${grid.peerId}${files ? `; files at ${files.url}` : ''}`);
    const stopDisplay = showLiveStatus(contribution);
    await new Promise<void>((done) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        stopDisplay();
        done();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
  } finally {
    grid.close();
    await files?.close();
  }
}
