// The serving store in Redis: per network one key holding its models in the order they were
// served, each with its placement and each assigned peer's last status (readiness), as JSON.
// Only the process holding the network's coordinator lease writes it; any process reads it (the
// HTTP view, `models` answers), and a process taking the lease over starts from it.
import type { Redis } from 'ioredis';
import type { LayerRange, Placement } from '../plan/index.ts';
import { AigridError, type ErrorCode, type ModelSpec } from '../protocol/index.ts';
import type { RedisKeys } from './redis-registry.ts';
import type { PeerServing, ServedModel, ServingStore } from './serving-store.ts';

interface StoredPlacement {
  assignments: [string, number, number][];
  coverage: number[];
  replication: number;
  error?: { code: ErrorCode; message: string };
  warning?: string;
}

interface StoredServed {
  spec: ModelSpec;
  owner: string;
  placement: StoredPlacement | null;
  status: [string, PeerServing][];
  failed?: [string, number][];
}

export class RedisServingStore implements ServingStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async get(network: string): Promise<ServedModel[]> {
    const text = await this.redis.get(this.keys.serving(network));
    return text === null ? [] : (JSON.parse(text) as StoredServed[]).map(fromStored);
  }

  async set(network: string, models: ServedModel[]): Promise<void> {
    if (models.length === 0) return this.delete(network);
    await this.redis.set(this.keys.serving(network), JSON.stringify(models.map(toStored)));
  }

  async delete(network: string): Promise<void> {
    await this.redis.del(this.keys.serving(network));
  }
}

function toStored(m: ServedModel): StoredServed {
  const p = m.placement;
  return {
    spec: m.spec,
    owner: m.owner,
    placement: p && {
      assignments: [...p.assignments].map(([peerId, r]) => [peerId, r.start, r.end]),
      coverage: p.coverage,
      replication: p.replication,
      ...(p.error ? { error: { code: p.error.code, message: p.error.message } } : {}),
      ...(p.warning ? { warning: p.warning } : {}),
    },
    status: [...m.status],
    ...(m.failed?.size ? { failed: [...m.failed] } : {}),
  };
}

function fromStored(s: StoredServed): ServedModel {
  const p = s.placement;
  const placement: Placement | null = p && {
    model: s.spec,
    assignments: new Map<string, LayerRange>(p.assignments.map(([peerId, start, end]) => [peerId, { start, end }])),
    coverage: p.coverage,
    replication: p.replication,
    ...(p.error ? { error: new AigridError(p.error.code, p.error.message) } : {}),
    ...(p.warning ? { warning: p.warning } : {}),
  };
  return { spec: s.spec, owner: s.owner, placement, status: new Map(s.status), ...(s.failed ? { failed: new Map(s.failed) } : {}) };
}
