// window.aigridApp: the tab's connection for scripts and end-to-end tests. join() links to every peer
// by default and offers 1024 MB; contribute() serves an explicit layer range (the Contribute page
// instead follows the coordinator's assignments).
import { GridPeer, type ServingStatus } from '../grid/index.ts';
import type { Mesh } from '../mesh/index.ts';
import { CpuBackend } from '../model/backend/cpu.ts';
import type { BackendChoice } from '../model/backend/select.ts';
import { checkpointOpener, openModel } from '../model/checkpoint/index.ts';
import { AigridError, type ModelSpec } from '../../protocol/index.ts';
import { connection, join as joinNetwork, leave, serveWith, type JoinOptions } from './connection.ts';

interface ContributeOptions {
  model: ModelSpec;
  /** Layers [start, end) to serve. */
  start: number;
  end: number;
  /** 'auto' (default): WebGPU when the page has an adapter, else the CPU. */
  backend?: BackendChoice;
  /** Keep downloaded ranges in the Cache API (default true). */
  cache?: boolean;
}

let gridPeer: GridPeer | null = null;
let cacheRanges = true;

async function join(options: JoinOptions): Promise<Mesh> {
  return (await joinNetwork({ memoryBudgetMB: 1024, ...options })).mesh;
}

/**
 * Serves layers [start, end) of a model from this tab on the joined mesh: the weights are read over
 * HTTP Range from the model's source. Resolves with the serving status once the shard is ready.
 */
async function contribute(options: ContributeOptions): Promise<ServingStatus> {
  const mesh = connection()?.mesh;
  if (!mesh) throw new AigridError('ERR_INVALID_ARGUMENT', 'join a network before contributing');
  if (gridPeer?.mesh !== mesh) {
    gridPeer?.close();
    const peer = new GridPeer({
      mesh,
      backend: options.backend ?? 'auto',
      open: checkpointOpener(openModel, { cache: cacheRanges ? undefined : false }),
    });
    gridPeer = peer;
    serveWith({
      stop: () => {
        peer.close();
        if (gridPeer === peer) gridPeer = null;
      },
    });
  }
  const { model, start, end } = options;
  cacheRanges = options.cache !== false;
  await gridPeer.assign(model, start, end);
  return gridPeer.status().find((s) => s.modelId === model.modelId)!;
}

/**
 * Which path this tab's CPU backend runs (the runtime its contributions on the CPU share): the
 * WebAssembly SIMD kernels need cross-origin isolation, else linears run in blocked JS.
 */
async function cpuKernels(): Promise<{ crossOriginIsolated: boolean; simd: boolean; threads: number }> {
  const backend = await CpuBackend.create();
  return { crossOriginIsolated: globalThis.crossOriginIsolated === true, simd: backend.simd, threads: backend.threads };
}

declare global {
  interface Window {
    aigridApp: {
      join: typeof join;
      leave: typeof leave;
      contribute: typeof contribute;
      cpuKernels: typeof cpuKernels;
      readonly mesh: Mesh | null;
      readonly grid: GridPeer | null;
    };
  }
}

export function installScripting(): void {
  window.aigridApp = {
    join,
    leave,
    contribute,
    cpuKernels,
    get mesh() {
      return connection()?.mesh ?? null;
    },
    get grid() {
      return gridPeer;
    },
  };
}
