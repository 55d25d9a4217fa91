// The policy registry of each network: the owner's scripts for its hooks, checked for shape and
// size here (their code is compiled where it runs: policy/), owner-only, bounded and kept like
// blocks. The server runs none of them itself yet.
import { AigridError, MAX_POLICIES_PER_NETWORK, PolicyIdSchema, PolicySpecSchema, type ClientMessage, type PolicyRecord, type PolicySpec, type ServerMessage } from '../protocol/index.ts';
import type { Governance } from './governance.ts';
import { answerRegistry, OwnedRecords } from './owned-records.ts';

type PoliciesRequest = Extract<ClientMessage, { type: 'policies' }>;

function checkPolicySpec(value: unknown): PolicySpec {
  const parsed = PolicySpecSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw new AigridError('ERR_POLICY_INVALID', `${issue.path.length ? issue.path.join('.') : 'policy'}: ${issue.message}`);
}

export class PolicyRegistry {
  private readonly records: OwnedRecords<PolicySpec, PolicyRecord>;

  constructor(governance: Governance, restored: Record<string, PolicyRecord[]> = {}, onChange?: () => void) {
    this.records = new OwnedRecords<PolicySpec, PolicyRecord>(governance, {
      noun: 'policy',
      key: (p) => p.id,
      check: checkPolicySpec,
      max: MAX_POLICIES_PER_NETWORK,
      ownerOnly: true,
      exists: 'ERR_POLICY_EXISTS',
      unknown: 'ERR_UNKNOWN_POLICY',
      restored,
      ...(onChange ? { onChange } : {}),
    });
  }

  all(): Record<string, PolicyRecord[]> {
    return this.records.all();
  }

  forget(network: string): void {
    this.records.forget(network);
  }

  /** Answers one `policies` request: the policies concerned, or the error naming why not. */
  handle(network: string, peerId: string, msg: PoliciesRequest, reply: (m: ServerMessage) => void): void {
    answerRegistry(this.records, { type: 'policies', record: 'policy', key: 'id', parseKey: (id) => PolicyIdSchema.parse(id) }, network, peerId, msg, reply);
  }
}
