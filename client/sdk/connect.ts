// connect(): joins a network as a client and returns the Grid. The platform (WebRTC, WebSocket,
// how checkpoints are opened, where a GPU comes from) is injected: the browser entry (index.ts)
// uses the page's, the Node entry (node.ts) @roamhq/wrtc, ws, the disk cache and Dawn.
import { Mesh, detectCapabilities, startMesh, type MeshPlatform } from '../mesh/index.ts';
import type { BackendChoice } from '../model/backend/select.ts';
import { AigridError, type Capabilities, type Identity, type PipelineTask } from '../../protocol/index.ts';
import { Grid } from './grid.ts';
import type { CheckpointOpener } from '../model/checkpoint/opener.ts';
import type { VerifyOptions } from '../grid/verifier.ts';

export const DEFAULT_NETWORK = 'default';

export interface ConnectOptions {
  /** Signaling server, e.g. ws://127.0.0.1:8787/signal; or several of one deployment, used in turn. */
  signal: string | readonly string[];
  /** Network to join (default "default"). */
  network?: string;
  /** Who this client is (default: the platform's: kept in IndexedDB in pages, ephemeral in Node). */
  identity?: Identity;
  /** Who contribute()'s serving peer is (default: the platform's, as for `identity`). */
  peerIdentity?: Identity;
  /** Where this client's head (embedding, LM head) runs (default: 'auto' in pages, 'cpu' in Node). */
  backend?: BackendChoice;
  /** Longest wait for progress along a route before failing over to another (default 30 s). */
  timeoutMs?: number;
  /**
   * Spot-checks of the peers' work: a share of sessions replayed on a route that swaps one hop
   * (default 5%, 20% through keys with little history); wrong peers leave the client's routes
   * and the coordinator hears. `false` turns checking off.
   */
  verify?: VerifyOptions | false;
  /** Most WebRTC links kept at once. */
  maxConnections?: number;
  /** How this peer is listed in the directory (default: the platform's, 'browser' or 'node'). */
  kind?: Capabilities['kind'];
  /**
   * Whole-model pipeline tasks a contribution offers to run (default: all of them in Node, and in
   * pages served with /sdk.js; [] for none).
   */
  tasks?: readonly PipelineTask[];
}

/** What a platform entry supplies. */
export interface PlatformParts {
  kind: Capabilities['kind'];
  mesh: MeshPlatform;
  open: CheckpointOpener;
  gpu: () => Promise<GPU | undefined>;
  backend: BackendChoice;
  agent?: string;
  /** Whole-model pipeline tasks a contributing peer of this platform runs. */
  tasks?: readonly PipelineTask[];
  /** Where onnxruntime-web's files are, for pipelines in pages. */
  pipelineWasmPaths?: string;
  /** The identity this platform keeps for a role ('client' or 'peer'). */
  identity: (role: 'client' | 'peer') => Promise<Identity>;
}

export async function connectWith(platform: PlatformParts, options: ConnectOptions): Promise<Grid> {
  const urls: unknown[] = Array.isArray(options?.signal) ? options.signal : [options?.signal];
  if (!options || urls.length === 0 || !urls.every((u) => typeof u === 'string' && /^wss?:\/\//.test(u))) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `connect() needs signal: a ws:// or wss:// URL of a signaling server, got ${JSON.stringify(options?.signal)}`);
  }
  // `gpu`: what a contributing peer serves on, described in its capabilities.
  const join = async (memoryBudgetMB: number, gpu: GPU | undefined, identity: Identity) => {
    const capabilities = await detectCapabilities({ kind: options.kind ?? platform.kind, memoryBudgetMB, gpu, agent: platform.agent, ...(memoryBudgetMB > 0 ? { tasks: options.tasks ?? platform.tasks ?? [] } : {}) });
    return startMesh(new Mesh({
      ...platform.mesh,
      signal: options.signal,
      network: options.network ?? DEFAULT_NETWORK,
      identity,
      capabilities,
      autoConnect: false,
      maxConnections: options.maxConnections,
    }));
  };
  // The client offers no memory; contribute() joins a second peer that does.
  const mesh = await join(0, undefined, options.identity ?? (await platform.identity('client')));
  const joinAsPeer = async (memoryBudgetMB: number, gpu?: GPU) => join(memoryBudgetMB, gpu, options.peerIdentity ?? (await platform.identity('peer')));
  return new Grid({ mesh, joinAsPeer, verify: options.verify, open: platform.open, backend: options.backend ?? platform.backend, gpu: platform.gpu, timeoutMs: options.timeoutMs, pipelineWasmPaths: platform.pipelineWasmPaths });
}
