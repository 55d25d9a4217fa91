// This tab or process serving layers for the network: a peer of its own (its own mesh, announcing
// the memory budget) running a GridPeer that follows the coordinator's assignments. Being a
// separate peer from the grid's client lets a route pass through this process like any other.
// stop() frees the layers and leaves the network, so the coordinator moves them to other peers.
import { EventEmitter } from 'events';
import { GridPeer, type LoadingProgress, type ServingStatus } from '../grid/index.ts';
import type { CheckpointOpener } from '../model/checkpoint/index.ts';
import type { Mesh } from '../mesh/mesh.ts';
import type { BackendChoice } from '../model/backend/select.ts';
import type { AigridError } from '../../protocol/index.ts';

export interface ContributionEvents {
  status: [status: ServingStatus];
  progress: [progress: LoadingProgress];
  warning: [error: AigridError];
  stopped: [];
}

export interface ContributionOptions {
  /** The contribution's own mesh, joined with the memory budget; closed by stop(). */
  mesh: Mesh;
  memoryBudgetMB: number;
  open: CheckpointOpener;
  /** 'auto': WebGPU or the CPU, measured on each assigned model's shapes (grid/serving-backend.ts). */
  backend: BackendChoice;
  gpu?: GPU;
  /** Where onnxruntime-web's files are, for pipeline blocks in a page. */
  pipelineWasmPaths?: string;
}

export class Contribution extends EventEmitter<ContributionEvents> {
  readonly peer: GridPeer;
  readonly startedAt = Date.now();
  private stopped = false;

  constructor(private readonly options: ContributionOptions) {
    super();
    const { mesh, backend, gpu, open, pipelineWasmPaths } = options;
    this.peer = new GridPeer({ mesh, backend, gpu, open, ...(pipelineWasmPaths ? { pipelineWasmPaths } : {}) });
    this.peer.on('status', (s) => this.emit('status', s));
    this.peer.on('progress', (p) => this.emit('progress', p));
    this.peer.on('warning', (e) => this.emit('warning', e));
  }

  /** This contribution's peer id in the network (not the grid client's). */
  get peerId(): string {
    return this.options.mesh.peerId;
  }

  get memoryBudgetMB(): number {
    return this.options.memoryBudgetMB;
  }

  get active(): boolean {
    return !this.stopped;
  }

  /** What this peer serves now: model, layers, state, sessions and tokens served. */
  status(): ServingStatus[] {
    return this.peer.status();
  }

  /** Tokens this peer has run through its layers, over every model. */
  get tokensServed(): number {
    return this.peer.status().reduce((sum, s) => sum + s.tokensServed, 0);
  }

  get uptimeS(): number {
    return Math.round((Date.now() - this.startedAt) / 1000);
  }

  /** Stops serving: layers freed here and the peer leaves, so the coordinator places them elsewhere. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.peer.close();
    this.options.mesh.close();
    this.emit('stopped');
  }
}
