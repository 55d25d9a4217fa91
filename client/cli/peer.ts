// `aigrid peer`: a Node edge peer that joins a network and stays in the mesh.
import { parseArgs } from 'node:util';
import { Mesh, detectCapabilities } from '../mesh/index.ts';
import { nodePlatform } from '../mesh/node.ts';
import { DEFAULT_MAX_PEER_CONNECTIONS } from '../protocol/index.ts';

const USAGE = `Usage: aigrid peer [options]

Join an AIGrid network as a Node edge peer and stay in the mesh until stopped.

Options:
  --signal URL          signaling server (env AIGRID_SIGNAL; default ws://127.0.0.1:8787/signal)
  --network NAME        network to join (env AIGRID_NETWORK; default "default")
  --id ID               peer id (4-64 of A-Z a-z 0-9 _ -; default random)
  --memory-mb N         memory budget offered to the network (default 1024)
  --max-connections N   most WebRTC links this peer keeps (default ${DEFAULT_MAX_PEER_CONNECTIONS})
  -h, --help            show this help
`;

export async function runPeerCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      signal: { type: 'string', default: process.env.AIGRID_SIGNAL ?? 'ws://127.0.0.1:8787/signal' },
      network: { type: 'string', default: process.env.AIGRID_NETWORK ?? 'default' },
      id: { type: 'string' },
      'memory-mb': { type: 'string', default: '1024' },
      'max-connections': { type: 'string', default: String(DEFAULT_MAX_PEER_CONNECTIONS) },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const memoryBudgetMB = Number(values['memory-mb']);
  const maxConnections = Number(values['max-connections']);
  if (!(memoryBudgetMB >= 0) || !(maxConnections >= 1)) {
    throw new Error('--memory-mb must be >= 0 and --max-connections >= 1 (see --help)');
  }
  const capabilities = await detectCapabilities({ kind: 'node', memoryBudgetMB, agent: `node ${process.version}` });
  const mesh = new Mesh({
    ...nodePlatform(),
    signal: values.signal!,
    network: values.network!,
    peerId: values.id,
    capabilities,
    maxConnections,
  });
  const log = (line: string) => process.stdout.write(`${line}\n`);
  mesh.on('state', (s) => log(`signaling ${s}`));
  mesh.signaling.on('join', (p) => log(`+ peer ${p.peerId} (${p.capabilities.kind})`));
  mesh.signaling.on('leave', (id, reason) => log(`- peer ${id} (${reason})`));
  mesh.on('connection', (link) => log(`link open ${link.remoteId}`));
  mesh.on('disconnect', (id, err) => log(`link closed ${id}${err ? ` (${err.code})` : ''}`));
  mesh.on('warning', (err) => log(`error ${err.code}: ${err.message}`));
  const stop = () => {
    mesh.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const peers = await mesh.start();
  log(`joined network ${mesh.network} as ${mesh.peerId} (${peers.length} other peers)`);
}
