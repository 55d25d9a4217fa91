// One serving peer of bench:grid in its own Node process, so that pipeline stages run in parallel
// as they would on separate machines. Started by grid.ts with an IPC channel:
//   node --import ./bin/register.js test/bench/grid-peer.ts '<PeerConfig JSON>'
// It joins the network, loads its range and sends {type: 'ready'} (or {type: 'error'}); it answers
// {type: 'stats', reset?} with the decode frames it received (count, bytes) and its batch stats,
// profiles its CPU between {type: 'profile'} and {type: 'profile', file}, and exits when the parent goes away.
import { performance } from 'node:perf_hooks';
import { GridPeer } from '../../client/grid/index.ts';
import { checkpointOpener } from '../../client/model/checkpoint/opener.ts';
import { openCheckpointNode } from '../../client/model/checkpoint/node.ts';
import { Mesh } from '../../client/mesh/index.ts';
import { nodePlatform } from '../../client/mesh/node.ts';
import { ServingFrame, unwrapSigned, type Capabilities, type ModelSpec } from '../../protocol/index.ts';
import { GpuContext } from '../../kernels/context.ts';
import { nodeGpu } from '../../kernels/node-gpu.ts';
import { startProfile, stopProfile } from './profile.ts';
import { testIdentity } from '../helpers/identities.ts';

export interface PeerConfig {
  /** The peer's test identity (idOf(name) is its id). */
  name: string;
  signal: string;
  network: string;
  model: ModelSpec;
  start: number;
  end: number;
  backend: 'cpu' | 'webgpu';
  capabilities: Capabilities;
  /** Forward frames up to this many bytes count as decode frames (one row). */
  decodeFrameBytes: number;
}

export type PeerMessage =
  | { type: 'ready' }
  | { type: 'error'; message: string }
  | { type: 'stats'; frames: number; bytes: number; largestBatch: number; passes: number; steps: number; cpuMs: number; busyMs: number };

export type ParentMessage = { type: 'stats'; reset?: boolean } | { type: 'profile'; file?: string };

const send = (msg: PeerMessage) => process.send?.(msg);

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '') as PeerConfig;
  const mesh = new Mesh({
    ...nodePlatform(), signal: config.signal, network: config.network, capabilities: config.capabilities,
    autoConnect: false, maxConnections: 16, identity: testIdentity(config.name),
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  await mesh.start();
  const gpu = config.backend === 'webgpu' ? await GpuContext.create({ gpu: await nodeGpu() }) : undefined;
  const peer = new GridPeer({ mesh, backend: config.backend, gpu, open: checkpointOpener(openCheckpointNode, { cache: false }), followAssignments: false });
  let frames = 0;
  let bytes = 0;
  mesh.on('frame', (_from, f) => {
    // From the client plain, from a hop signed (the frame inside, after its leaf).
    const inner = f.type === ServingFrame.signed ? unwrapSigned(f.payload) : f;
    if (inner?.type !== ServingFrame.forward || inner.payload.byteLength > config.decodeFrameBytes) return;
    bytes += inner.payload.byteLength;
    frames++;
  });
  process.on('message', (msg: ParentMessage) => {
    // A profile starts without a file and is written when one is given.
    if (msg.type === 'profile') return void (msg.file ? stopProfile(msg.file) : startProfile());
    const { largest, passes, steps } = peer.batchStats;
    const cpu = process.cpuUsage();
    send({ type: 'stats', frames, bytes, largestBatch: largest, passes, steps, cpuMs: (cpu.user + cpu.system) / 1000, busyMs: performance.eventLoopUtilization().active });
    if (msg.reset) frames = bytes = 0;
  });
  await peer.assign(config.model, config.start, config.end);
  send({ type: 'ready' });
}

main().catch((err: unknown) => {
  send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100);
});
