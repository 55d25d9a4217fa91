// The policy registry of each network: the owner's scripts for its hooks, checked for shape and
// size here (their code is compiled where it runs: policy/), owner-only, bounded and kept like
// blocks. A network has at most one policy per server hook (route, placement, admission, quota),
// active while it exists (policy-hooks.ts runs it); vdag policies are named by vDAG nodes.
import { AigridError, MAX_POLICIES_PER_NETWORK, PolicyIdSchema, PolicySpecSchema, type ClientMessage, type PolicyHook, type PolicyRecord, type PolicySpec, type ServerMessage } from '../protocol/index.ts';
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
      check: (value, network) => this.checkHookFree(network, checkPolicySpec(value)),
      max: MAX_POLICIES_PER_NETWORK,
      ownerOnly: true,
      exists: 'ERR_POLICY_EXISTS',
      unknown: 'ERR_UNKNOWN_POLICY',
      restored,
      ...(onChange ? { onChange } : {}),
    });
  }

  /** The policy a server hook runs on the network: the one for that hook (the oldest, should a restored folder hold more). */
  active(network: string, hook: Exclude<PolicyHook, 'vdag'>): PolicyRecord | undefined {
    let found: PolicyRecord | undefined;
    for (const record of this.records.list(network)) if (record.hook === hook && (!found || record.createdAt < found.createdAt)) found = record;
    return found;
  }

  /** A second policy for a server hook is refused: which one runs would otherwise be a guess. */
  private checkHookFree(network: string, spec: PolicySpec): PolicySpec {
    if (spec.hook === 'vdag') return spec;
    const other = this.records.list(network).find((r) => r.hook === spec.hook && r.id !== spec.id);
    if (other) throw new AigridError('ERR_POLICY_HOOK_TAKEN', `network ${network} has a ${spec.hook} policy already (${other.id}); update or delete it first`);
    return spec;
  }

  all(): Record<string, PolicyRecord[]> {
    return this.records.all();
  }

  forget(network: string): void {
    this.records.forget(network);
  }

  load(network: string, records: readonly PolicyRecord[]): void {
    this.records.load(network, records);
  }

  /** Answers one `policies` request: the policies concerned, or the error naming why not. */
  handle(network: string, peerId: string, msg: PoliciesRequest, reply: (m: ServerMessage) => void): void {
    answerRegistry(this.records, { type: 'policies', record: 'policy', key: 'id', parseKey: (id) => PolicyIdSchema.parse(id) }, network, peerId, msg, reply);
  }
}
