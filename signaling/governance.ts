// Who governs each network: its owner (a peer id, so a key) and who may serve models on it. The
// owner is the one the server's operator named (--owner), else the first peer that joined the
// network when it was created. The owner may list the peers that may serve new models (the
// default is anyone), set the network's credits mode and prices (credits.ts), and may change or
// withdraw any model; a model's own server may change or withdraw that model. Rules live as long
// as the network has members, like its models, and outlive a restart in the data folder (else the
// first peer back would own the network).
import { DEFAULT_CREDIT_RULES, type CreditRules, type Servers, type Sources } from '../protocol/index.ts';

export interface NetworkRules {
  owner: string;
  servers: Servers;
  /** Prefixes a served model's weights must also match ('server': the server's rule alone). */
  sources: Sources;
  /** Credits mode and prices (signaling/credits.ts); the defaults when absent. */
  credits?: CreditRules;
}

export class Governance {
  private readonly rules = new Map<string, NetworkRules>();

  /**
   * `owner`: the operator's key, owner of every network on this server. `restored`: the rules
   * kept before a restart. `onChange` is called after every change.
   */
  constructor(
    private readonly owner?: string,
    restored: Record<string, NetworkRules> = {},
    private readonly onChange: () => void = () => {},
  ) {
    for (const [network, rules] of Object.entries(restored)) this.rules.set(network, { ...rules, owner: owner ?? rules.owner });
  }

  /** Every network's rules, as the data folder keeps them. */
  all(): Record<string, NetworkRules> {
    return Object.fromEntries(this.rules);
  }

  /** A peer joined `network`: the network's rules, made now when it is new. */
  joined(network: string, peerId: string): NetworkRules {
    let rules = this.rules.get(network);
    if (!rules) {
      this.rules.set(network, (rules = { owner: this.owner ?? peerId, servers: 'anyone', sources: 'server' }));
      this.onChange();
    }
    return rules;
  }

  of(network: string): NetworkRules | undefined {
    return this.rules.get(network);
  }

  isOwner(network: string, peerId: string): boolean {
    return this.rules.get(network)?.owner === peerId;
  }

  /** Whether `peerId` may serve a model that is not yet on the network. */
  mayServe(network: string, peerId: string): boolean {
    const rules = this.rules.get(network);
    if (!rules) return false;
    return rules.servers === 'anyone' || rules.owner === peerId || rules.servers.includes(peerId);
  }

  /** Whether `peerId` may change or withdraw a model that `modelOwner` served. */
  mayChange(network: string, peerId: string, modelOwner: string): boolean {
    return peerId === modelOwner || this.isOwner(network, peerId);
  }

  /** The owner's policy: who may serve, and from where (each left as it was when not given). */
  setPolicy(network: string, policy: { servers?: Servers; sources?: Sources; credits?: Partial<CreditRules> }): NetworkRules | undefined {
    const rules = this.rules.get(network);
    if (!rules) return undefined;
    if (policy.servers !== undefined) rules.servers = Array.isArray(policy.servers) ? [...new Set(policy.servers)] : policy.servers;
    if (policy.sources !== undefined) rules.sources = Array.isArray(policy.sources) ? [...new Set(policy.sources)] : policy.sources;
    if (policy.credits !== undefined) rules.credits = { ...DEFAULT_CREDIT_RULES, ...rules.credits, ...Object.fromEntries(Object.entries(policy.credits).filter(([, v]) => v !== undefined)) };
    this.onChange();
    return rules;
  }

  /** Why the network refuses weights from `source` (and its hub mirror), or undefined. */
  refusesSource(network: string, source: string, baseUrl?: string): string | undefined {
    const prefixes = this.rules.get(network)?.sources;
    if (!Array.isArray(prefixes)) return undefined;
    const ok = (text: string) => prefixes.some((p) => text.startsWith(p));
    if (!ok(source)) return `its owner takes weights only from ${prefixes.map((p) => JSON.stringify(p)).join(', ')}`;
    if (baseUrl !== undefined && !ok(baseUrl)) return `its owner takes mirrors only from ${prefixes.map((p) => JSON.stringify(p)).join(', ')}`;
    return undefined;
  }

  /**
   * The rules another signaling process of the same deployment wrote (redis-cluster.ts); none
   * forgets them. Not reported to onChange: they are already shared.
   */
  load(network: string, rules: NetworkRules | undefined): void {
    if (rules) this.rules.set(network, { ...rules, owner: this.owner ?? rules.owner });
    else this.rules.delete(network);
  }

  /** The network's last member left. */
  forget(network: string): void {
    if (this.rules.delete(network)) this.onChange();
  }
}
