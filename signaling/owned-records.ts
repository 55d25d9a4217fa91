// Records members of a network define and own (blocks, vDAGs): created by anyone the network lets
// serve, changed or deleted by their owner or the network's owner, bounded per network, kept with
// the network's rules (the data folder) and forgotten with them.
import { AigridError, type ErrorCode, type ServerMessage } from '../protocol/index.ts';
import type { Governance } from './governance.ts';

export interface Owned {
  owner: string;
  createdAt: number;
  updatedAt: number;
}

export interface OwnedRecordsOptions<Spec, Rec extends Spec & Owned> {
  /** What a record is called in messages: 'block', 'vDAG'. */
  noun: string;
  key: (spec: Spec) => string;
  /** The spec checked (throws the named error), given the network for checks against its other records. */
  check: (value: unknown, network: string) => Spec;
  max: number;
  /** Only the network's owner creates (policies); else anyone the network lets serve. */
  ownerOnly?: boolean;
  exists: ErrorCode;
  unknown: ErrorCode;
  restored?: Record<string, Rec[]>;
  onChange?: () => void;
  now?: () => number;
}

export class OwnedRecords<Spec, Rec extends Spec & Owned> {
  private readonly byNetwork = new Map<string, Map<string, Rec>>();
  private readonly onChange: () => void;
  private readonly now: () => number;

  constructor(
    private readonly governance: Governance,
    private readonly o: OwnedRecordsOptions<Spec, Rec>,
  ) {
    this.onChange = o.onChange ?? (() => {});
    this.now = o.now ?? Date.now;
    for (const [network, records] of Object.entries(o.restored ?? {})) {
      if (records.length) this.byNetwork.set(network, new Map(records.map((r) => [o.key(r), r])));
    }
  }

  /** Every network's records, as the data folder keeps them. */
  all(): Record<string, Rec[]> {
    return Object.fromEntries([...this.byNetwork].map(([network, records]) => [network, [...records.values()]]));
  }

  list(network: string): Rec[] {
    return [...(this.byNetwork.get(network)?.values() ?? [])];
  }

  get(network: string, key: string): Rec {
    const record = this.byNetwork.get(network)?.get(key);
    if (!record) throw new AigridError(this.o.unknown, `network ${network} has no ${this.o.noun} ${key}`);
    return record;
  }

  create(network: string, peerId: string, value: unknown): Rec {
    const spec = this.o.check(value, network);
    const key = this.o.key(spec);
    if (this.o.ownerOnly ? !this.governance.isOwner(network, peerId) : !this.governance.mayServe(network, peerId)) {
      const why = this.o.ownerOnly ? `only the network's owner does` : 'its owner lists who may serve';
      throw new AigridError('ERR_PERMISSION_DENIED', `${peerId} may not create a ${this.o.noun} on network ${network}: ${why}`);
    }
    let records = this.byNetwork.get(network);
    const old = records?.get(key);
    if (old) throw new AigridError(this.o.exists, `network ${network} has a ${this.o.noun} ${key} already (owned by ${old.owner})`);
    if ((records?.size ?? 0) >= this.o.max) throw new AigridError('ERR_REGISTRY_FULL', `network ${network} holds ${this.o.max} of its ${this.o.noun}s, the most it takes`);
    if (!records) this.byNetwork.set(network, (records = new Map()));
    const at = this.now();
    const record = { ...spec, owner: peerId, createdAt: at, updatedAt: at } as Rec;
    records.set(key, record);
    this.onChange();
    return record;
  }

  update(network: string, peerId: string, value: unknown): Rec {
    const spec = this.o.check(value, network);
    const key = this.o.key(spec);
    const old = this.mayChange(network, peerId, key);
    const record = { ...spec, owner: old.owner, createdAt: old.createdAt, updatedAt: Math.max(this.now(), old.updatedAt) } as Rec;
    this.byNetwork.get(network)!.set(key, record);
    this.onChange();
    return record;
  }

  delete(network: string, peerId: string, key: string): Rec {
    const old = this.mayChange(network, peerId, key);
    const records = this.byNetwork.get(network)!;
    records.delete(key);
    if (records.size === 0) this.byNetwork.delete(network);
    this.onChange();
    return old;
  }

  /** The network's records as another signaling process made them (a shared Redis). */
  load(network: string, records: readonly Rec[]): void {
    if (records.length) this.byNetwork.set(network, new Map(records.map((r) => [this.o.key(r), r])));
    else this.byNetwork.delete(network);
  }

  /** The network's last member left (with its rules). */
  forget(network: string): void {
    if (this.byNetwork.delete(network)) this.onChange();
  }

  private mayChange(network: string, peerId: string, key: string): Rec {
    const old = this.get(network, key);
    const may = this.o.ownerOnly ? this.governance.isOwner(network, peerId) : this.governance.mayChange(network, peerId, old.owner);
    if (!may) {
      throw new AigridError('ERR_PERMISSION_DENIED', `${this.o.noun} ${key} on network ${network} belongs to ${old.owner}; only it or the network's owner may change it`);
    }
    return old;
  }
}

/** A registry request as the protocol has it (protocol/registry.ts), its record and key fields by name. */
export type RegistryRequest = { requestId: number; op: 'create' | 'update' | 'delete' | 'get' | 'list' } & Record<string, unknown>;

/**
 * Answers one registry request of `type` from `peerId`: the records concerned, or the named error
 * with the requestId. `list` may narrow the listing (a query).
 */
export function answerRegistry<Spec, Rec extends Spec & Owned>(
  records: OwnedRecords<Spec, Rec>,
  fields: { type: 'blocks' | 'vdags' | 'policies'; record: string; key: string; parseKey: (key: unknown) => string },
  network: string,
  peerId: string,
  msg: RegistryRequest,
  reply: (message: ServerMessage) => void,
  list: () => Rec[] = () => records.list(network),
): void {
  let answer: Rec[];
  try {
    const key = () => fields.parseKey(msg[fields.key]);
    switch (msg.op) {
      case 'create':
        answer = [records.create(network, peerId, msg[fields.record])];
        break;
      case 'update':
        answer = [records.update(network, peerId, msg[fields.record])];
        break;
      case 'delete':
        answer = [records.delete(network, peerId, key())];
        break;
      case 'get':
        answer = [records.get(network, key())];
        break;
      case 'list':
        answer = list();
        break;
    }
  } catch (err) {
    if (!(err instanceof AigridError)) throw err;
    return reply({ type: 'error', code: err.code, message: err.message, ref: fields.type, requestId: msg.requestId });
  }
  reply({ type: fields.type, requestId: msg.requestId, [fields.type]: answer } as unknown as ServerMessage);
}
