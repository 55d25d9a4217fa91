// The vDAG registry of each network: specs compiled against the network's blocks when created or
// updated (plan/vdag.ts names the node that is wrong), bounded, owned and kept like blocks.
import { compileVdag } from '../plan/vdag.ts';
import { AigridError, MAX_VDAG_SPEC_BYTES, MAX_VDAGS_PER_NETWORK, VdagIdSchema, type ClientMessage, type ServerMessage, type Vdag, type VdagSpec } from '../protocol/index.ts';
import type { BlockRegistry } from './blocks.ts';
import type { Governance } from './governance.ts';
import { answerRegistry, OwnedRecords } from './owned-records.ts';

type VdagsRequest = Extract<ClientMessage, { type: 'vdags' }>;

export class VdagRegistry {
  private readonly records: OwnedRecords<VdagSpec, Vdag>;

  constructor(governance: Governance, blocks: BlockRegistry, restored: Record<string, Vdag[]> = {}, onChange?: () => void) {
    this.records = new OwnedRecords<VdagSpec, Vdag>(governance, {
      noun: 'vDAG',
      key: (v) => v.id,
      check: (value, network) => {
        const bytes = JSON.stringify(value ?? null).length;
        if (bytes > MAX_VDAG_SPEC_BYTES) throw new AigridError('ERR_INVALID_VDAG', `the vDAG spec is ${bytes} bytes of JSON; at most ${MAX_VDAG_SPEC_BYTES}`);
        return compileVdag(value, blocks.list(network)).spec;
      },
      max: MAX_VDAGS_PER_NETWORK,
      exists: 'ERR_VDAG_EXISTS',
      unknown: 'ERR_UNKNOWN_VDAG',
      restored,
      ...(onChange ? { onChange } : {}),
    });
  }

  all(): Record<string, Vdag[]> {
    return this.records.all();
  }

  forget(network: string): void {
    this.records.forget(network);
  }

  load(network: string, records: readonly Vdag[]): void {
    this.records.load(network, records);
  }

  /** Answers one `vdags` request: the vDAGs concerned, or the error naming why not. */
  handle(network: string, peerId: string, msg: VdagsRequest, reply: (m: ServerMessage) => void): void {
    answerRegistry(this.records, { type: 'vdags', record: 'vdag', key: 'id', parseKey: (id) => VdagIdSchema.parse(id) }, network, peerId, msg, reply);
  }
}
