// The SDK for Node: connect() with @roamhq/wrtc and ws, checkpoints cached on disk, and Dawn's
// WebGPU (the webgpu package) for contributing when an adapter is there.
import { nodeGpu } from '../../kernels/node-gpu.ts';
import { nodePlatform } from '../mesh/node.ts';
import { ephemeralIdentity, PIPELINE_TASKS } from '../../protocol/index.ts';
import { openModelNode } from '../model/checkpoint/node.ts';
import { checkpointOpener } from '../model/checkpoint/opener.ts';
import { connectWith, type ConnectOptions } from './connect.ts';
import type { Grid } from './grid.ts';

export * from './exports.ts';
export { loadIdentityFile, defaultIdentityFile } from '../mesh/identity-file.ts';

export function connect(options: ConnectOptions): Promise<Grid> {
  return connectWith(
    {
      kind: 'node',
      mesh: nodePlatform(),
      open: checkpointOpener(openModelNode, {}),
      gpu: () => nodeGpu().catch(() => undefined),
      backend: 'cpu',
      agent: `node ${process.version}`,
      tasks: PIPELINE_TASKS,
      // A script keeps an identity across runs by passing loadIdentityFile(path) as `identity`.
      identity: async () => ephemeralIdentity(),
    },
    options,
  );
}
