// Where the coordinator keeps what each network serves: the models, their placements, and what
// each assigned peer last reported. In memory here; like RegistryStore, the interface is the seam
// for a store shared by several signaling processes.
import type { Placement } from '../plan/index.ts';
import type { ModelSpec, ServingState } from '../protocol/index.ts';

export interface PeerServing {
  state: ServingState;
  sessions: number;
  tokensServed: number;
  updatedAt: number;
}

export interface ServedModel {
  spec: ModelSpec;
  /** The peer that first served it: only it may change the spec (a key once identities land). */
  owner: string;
  /** Null until the first placement runs. */
  placement: Placement | null;
  /** peerId -> its last status for its current assignment (reset to loading on every new assign). */
  status: Map<string, PeerServing>;
  /** peerId -> until when (ms since the epoch) it is left out, having failed to load this model. */
  failed?: Map<string, number>;
}

export interface ServingStore {
  /** The models of one network, in the order they were first served; empty when none. */
  get(network: string): Promise<ServedModel[]>;
  set(network: string, models: ServedModel[]): Promise<void>;
  delete(network: string): Promise<void>;
}

export class MemoryServingStore implements ServingStore {
  private readonly byNetwork = new Map<string, ServedModel[]>();

  async get(network: string): Promise<ServedModel[]> {
    return this.byNetwork.get(network) ?? [];
  }

  async set(network: string, models: ServedModel[]): Promise<void> {
    if (models.length === 0) this.byNetwork.delete(network);
    else this.byNetwork.set(network, models);
  }

  async delete(network: string): Promise<void> {
    this.byNetwork.delete(network);
  }
}
