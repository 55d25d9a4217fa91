// `aigrid peer`: a Node edge peer that joins a network and stays in the mesh.
import { parseArgs } from 'node:util';
import { CpuBackend } from '../model/backend/cpu.ts';
import { GridPeer } from '../grid/index.ts';
import { checkpointOpener } from '../model/checkpoint/opener.ts';
import { openModelNode } from '../model/checkpoint/node.ts';
import { Mesh, detectCapabilities } from '../mesh/index.ts';
import { nodePlatform } from '../mesh/node.ts';
import { DEFAULT_MAX_PEER_CONNECTIONS, PIPELINE_TASKS } from '../../protocol/index.ts';
import { nodeGpu } from '../../kernels/node-gpu.ts';
import { backendOption, identityOption, memoryOption, signalOption } from './options.ts';

const USAGE = `Usage: aigrid peer [options]

Join an AIGrid network as a Node edge peer: it stays in the mesh until stopped and serves the
layers the network's coordinator assigns to it (weights fetched by HTTP Range, only those layers).

Options:
  --signal URL          signaling server (env AIGRID_SIGNAL; default ws://127.0.0.1:8787/signal); several, comma-separated,
                        are used in turn (signaling processes sharing a Redis)
  --network NAME        network to join (env AIGRID_NETWORK; default "default")
  --identity FILE       key file of this peer's identity, created if missing (default
                        peer.key in AIGRID_STATE_DIR, else ~/.local/state/aigrid); each peer
                        running at once needs its own
  --memory-mb N         memory budget offered to the network (default 1024)
  --max-connections N   most WebRTC links this peer keeps (default ${DEFAULT_MAX_PEER_CONNECTIONS})
  --backend B           webgpu, cpu or auto (default auto: with an adapter, whichever of WebGPU and
                        the CPU measures faster on each assigned model's layer shapes; else the CPU)
  --kv-dtype D          keys and values cached as f32 or f16 (half the memory; default f32)
  --threads N           CPU threads of quantized (GGUF) layers (default: every core)
  -h, --help            show this help
`;

export async function runPeerCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      signal: { type: 'string', default: process.env.AIGRID_SIGNAL ?? 'ws://127.0.0.1:8787/signal' },
      network: { type: 'string', default: process.env.AIGRID_NETWORK ?? 'default' },
      identity: { type: 'string' },
      'memory-mb': { type: 'string', default: '1024' },
      'max-connections': { type: 'string', default: String(DEFAULT_MAX_PEER_CONNECTIONS) },
      backend: { type: 'string', default: 'auto' },
      'kv-dtype': { type: 'string', default: 'f32' },
      threads: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const memoryBudgetMB = memoryOption(values['memory-mb'], true);
  const maxConnections = Number(values['max-connections']);
  if (!(maxConnections >= 1)) {
    throw new Error('--max-connections must be >= 1 (see --help)');
  }
  const backend = backendOption(values.backend);
  const kvDtype = values['kv-dtype'];
  if (kvDtype !== 'f32' && kvDtype !== 'f16') throw new Error(`--kv-dtype must be f32 or f16, not ${kvDtype}`);
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) throw new Error('--threads must be a whole number >= 1');
  // Without an adapter, 'auto' serves on the CPU; 'webgpu' insists and fails with ERR_NO_WEBGPU.
  // With one, 'auto' measures both per model when assigned (the status line says which and how fast).
  const gpu = backend === 'cpu' ? undefined : await nodeGpu().catch((err: Error) => {
    if (backend === 'webgpu') throw err;
    return undefined;
  });
  const capabilities = await detectCapabilities({ kind: 'node', memoryBudgetMB, agent: `node ${process.version}`, tasks: PIPELINE_TASKS });
  const identity = await identityOption(values.identity, 'peer');
  const mesh = new Mesh({
    ...nodePlatform(),
    signal: signalOption(values.signal),
    network: values.network!,
    identity,
    capabilities,
    maxConnections,
  });
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const grid = new GridPeer({ mesh, open: checkpointOpener(openModelNode, {}), backend: gpu ? backend : await CpuBackend.create({ threads }), gpu, threads, kvDtype });
  grid.on('status', (st) => log(`serving ${st.modelId} [${st.start}, ${st.end}): ${st.state}${st.detail ? ` (${st.detail})` : ''}`));
  grid.on('warning', (err) => log(`warning ${err.code}: ${err.message}`));
  mesh.on('state', (s) => log(`signaling ${s}`));
  mesh.signaling.on('join', (p) => log(`+ peer ${p.peerId} (${p.capabilities.kind})`));
  mesh.signaling.on('leave', (id, reason) => log(`- peer ${id} (${reason})`));
  mesh.on('connection', (link) => log(`link open ${link.remoteId}`));
  mesh.on('disconnect', (id, err) => log(`link closed ${id}${err ? ` (${err.code})` : ''}`));
  mesh.on('warning', (err) => log(`error ${err.code}: ${err.message}`));
  const stop = () => {
    grid.close();
    mesh.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const peers = await mesh.start();
  log(`joined network ${mesh.network} as ${mesh.peerId} (${peers.length} other peers)`);
}
