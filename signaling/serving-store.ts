// Where the coordinator keeps what each network serves: the models, their placements, and what
// each assigned peer last reported. In memory, told to a data folder (data-dir.ts) on each change
// when the server has one; like RegistryStore, the interface is the seam for a store shared by
// several signaling processes.
import type { Placement } from '../plan/index.ts';
import { coverageOf } from '../plan/layout.ts';
import type { LoadReport, ModelSpec, ServingState } from '../protocol/index.ts';
import type { StoredModel } from './data-dir.ts';

export interface PeerServing {
  state: ServingState;
  sessions: number;
  tokensServed: number;
  updatedAt: number;
  /** Its last reported load (hop latency for the Network page's map). */
  load?: LoadReport;
  /** When its reported load last fed the metrics (coordinator.ts: once per half report interval). */
  loadCountedAt?: number;
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

  /** `onChange`: called after every set or delete (the data folder writes the new state). */
  constructor(
    restored: Record<string, StoredModel[]> = {},
    private readonly onChange: () => void = () => {},
  ) {
    for (const [network, models] of Object.entries(restored)) if (models.length) this.byNetwork.set(network, models.map(servedFromStored));
  }

  /** Every network's models as the data folder keeps them (placements, not readiness). */
  stored(): Record<string, StoredModel[]> {
    return Object.fromEntries([...this.byNetwork].map(([network, models]) => [network, models.map(storedFromServed)]));
  }

  async get(network: string): Promise<ServedModel[]> {
    return this.byNetwork.get(network) ?? [];
  }

  async set(network: string, models: ServedModel[]): Promise<void> {
    if (models.length === 0) this.byNetwork.delete(network);
    else this.byNetwork.set(network, models);
    this.onChange();
  }

  async delete(network: string): Promise<void> {
    this.byNetwork.delete(network);
    this.onChange();
  }
}

function storedFromServed({ spec, owner, placement }: ServedModel): StoredModel {
  return { spec, owner, assignments: [...(placement?.assignments ?? [])].map(([peerId, r]) => [peerId, r.start, r.end]) };
}

/** A model as it was before a restart: its placement as stored, every holder loading until it reports. */
function servedFromStored({ spec, owner, assignments }: StoredModel): ServedModel {
  // Ordered by peerId, as placement keeps them.
  const kept = assignments.filter(([, start, end]) => start < end && end <= spec.numLayers).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const ranges = new Map(kept.map(([peerId, start, end]) => [peerId, { start, end }]));
  const coverage = coverageOf(spec.numLayers, ranges.values());
  const placement: Placement | null = ranges.size ? { model: spec, assignments: ranges, coverage, replication: Math.min(...coverage) } : null;
  return { spec, owner, placement, status: new Map() };
}
