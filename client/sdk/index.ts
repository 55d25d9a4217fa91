// The SDK for pages: connect() with the browser's WebRTC, WebSocket, Cache API and WebGPU, and
// identities kept in IndexedDB.
import { browserIdentity } from '../mesh/browser-identity.ts';
import { checkpointOpener, openModel } from '../model/checkpoint/index.ts';
import { connectWith, type ConnectOptions } from './connect.ts';
import type { Grid } from './grid.ts';
import { PIPELINE_TASKS } from '../../protocol/index.ts';

export * from './exports.ts';

export function connect(options: ConnectOptions): Promise<Grid> {
  return connectWith(
    {
      kind: 'browser',
      mesh: {},
      open: checkpointOpener(openModel, {}),
      gpu: async () => (typeof navigator !== 'undefined' && navigator.gpu ? navigator.gpu : undefined),
      backend: 'auto',
      agent: typeof navigator !== 'undefined' ? navigator.userAgent : undefined,
      // Pipelines run on onnxruntime-web's WebAssembly build, which the server of /sdk.js serves
      // at /ort/ (vite.config.ts).
      tasks: PIPELINE_TASKS,
      pipelineWasmPaths: new URL('/ort/', import.meta.url).href,
      identity: browserIdentity,
    },
    options,
  );
}
