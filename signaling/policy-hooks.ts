// The server hooks a network's owner may give a policy (protocol/policies.ts): route selection,
// placement, admission of a joining peer and quota per client. Each hook has the built-in
// behaviour as its default: without an active policy, and whenever the policy fails (throws,
// loops, runs out of memory, passes its hard deadline, answers a shape the hook does not take),
// the default decides, the failure is counted (/metrics) and logged. Policies run in
// WorkerSandbox's threads, never on the server's event loop, and one network's policies take at
// most a bounded share of them. The contracts (JSON in, JSON out):
//
//   route      in  {modelId, client, start, end, exclude, candidates: [{peerId, start, end, ready,
//                   sessions, latencyMs?, newcomer}]}
//              out {exclude?: [peerId]}: merged into the request's exclude, then the built-in
//                   route choice runs (no other holder: ERR_NO_ROUTE, as for the asker's own)
//   placement  in  {modelId, numLayers, layerBytes, replication, peers: [{peerId, kind, backend,
//                   memoryBudgetMB, gflops, gpu: {vendor, architecture} | null}]}
//              out {exclude?: [peerId]}: those peers hold nothing of the model; the built-in
//                   placement runs over the others
//   admission  in  {peerId, capabilities}          out {admit: boolean, reason?: string}
//   quota      in  {client, modelId, requests: {minute, hour}}   out {allow: boolean}
//
// Each gets the context {network, hook, now}. The network's owner is always admitted, so a bad
// admission policy cannot lock it out.
import { z } from 'zod';
import type { LayerRange, PeerStats } from '../plan/index.ts';
import { AigridError, errorMessage, PeerIdSchema, type Capabilities, type ErrorCode, type ModelSpec, type PeerInfo, type PolicyHook, type PolicyRecord } from '../protocol/index.ts';
import { WorkerSandbox, type WorkerSandboxOptions, type WorkerSandboxStats } from '../policy/worker-sandbox.ts';
import { QuotaCounts, type RequestCounts } from './quota-counts.ts';

export type ServerHook = Exclude<PolicyHook, 'vdag'>;

export function isServerHook(hook: PolicyHook): hook is ServerHook {
  return hook !== 'vdag';
}

export interface RouteCandidate {
  peerId: string;
  start: number;
  end: number;
  ready: boolean;
  sessions: number;
  latencyMs?: number;
  newcomer: boolean;
}

export interface RouteHookInput {
  modelId: string;
  client: string;
  start: number;
  end: number;
  exclude: string[];
  candidates: RouteCandidate[];
}

export interface PlacementHookInput {
  modelId: string;
  numLayers: number;
  layerBytes: number;
  replication: number;
  peers: { peerId: string; kind: Capabilities['kind']; backend: Capabilities['throughput']['backend']; memoryBudgetMB: number; gflops: number; gpu: { vendor: string; architecture: string } | null }[];
}

/** What the coordinator asks of a network's policies; each answers the default when there is none. */
export interface ServingHooks {
  /** Counts the route request; false when the quota policy refuses it. */
  quota(network: string, client: string, modelId: string): Promise<boolean>;
  /** Peers the route policy keeps off this route ([] by default). `input` is built only when a policy runs. */
  route(network: string, input: () => RouteHookInput): Promise<string[]>;
  /** Peers the placement policy keeps off this model ([] by default). */
  placement(network: string, input: () => PlacementHookInput): Promise<string[]>;
}

/** The route policy's input: the asker's request and the model's holders with what the coordinator knows of each. */
export function routeHookInput(
  client: string,
  msg: { modelId: string; start?: number; end?: number; exclude?: string[] },
  numLayers: number,
  assignments: ReadonlyMap<string, LayerRange>,
  stats: ReadonlyMap<string, PeerStats>,
  newcomer: (peerId: string) => boolean,
): RouteHookInput {
  const candidates = [...assignments].map(([peerId, { start, end }]): RouteCandidate => {
    const s = stats.get(peerId);
    return { peerId, start, end, ready: s?.ready ?? false, sessions: s?.sessions ?? 0, ...(s?.latencyMs === undefined ? {} : { latencyMs: s.latencyMs }), newcomer: newcomer(peerId) };
  });
  return { modelId: msg.modelId, client, start: msg.start ?? 0, end: msg.end ?? numLayers, exclude: msg.exclude ?? [], candidates };
}

/** The placement policy's input: the model's shape and the network's members. */
export function placementHookInput(spec: Pick<ModelSpec, 'modelId' | 'numLayers' | 'layerBytes' | 'replication'>, members: readonly PeerInfo[]): PlacementHookInput {
  const peers = members.map(({ peerId, capabilities: c }) => ({
    peerId,
    kind: c.kind,
    backend: c.throughput.backend,
    memoryBudgetMB: c.memoryBudgetMB,
    gflops: c.throughput.gflops,
    gpu: c.gpu ? { vendor: c.gpu.vendor, architecture: c.gpu.architecture } : null,
  }));
  return { modelId: spec.modelId, numLayers: spec.numLayers, layerBytes: spec.layerBytes, replication: spec.replication, peers };
}

export type AdmissionVerdict = { admit: true } | { admit: false; code: ErrorCode; reason: string };

export interface PolicyHooksOptions {
  /** The policy active for a hook on a network (signaling/policies.ts). */
  policy: (network: string, hook: ServerHook) => PolicyRecord | undefined;
  isOwner: (network: string, peerId: string) => boolean;
  /** A policy failed and the default was used (metrics.onPolicyFailure). */
  onFailure?: (hook: ServerHook) => void;
  /** Re-places a network's models: its placement policy changed. */
  replan?: (network: string) => void;
  sandbox?: WorkerSandboxOptions;
  log: (line: string) => void;
}

/** The most peers a route or placement policy may name. */
const MAX_EXCLUDED = 1024;
const LOG_EVERY_MS = 10_000;

const ExcludeOutput = z.strictObject({ exclude: z.array(PeerIdSchema).max(MAX_EXCLUDED).optional() });
const AdmissionOutput = z.strictObject({ admit: z.boolean(), reason: z.string().max(256).optional() });
const QuotaOutput = z.strictObject({ allow: z.boolean() });

export class PolicyHooks implements ServingHooks {
  private sandbox: WorkerSandbox | undefined;
  private closed = false;
  private readonly counts = new QuotaCounts();
  /** Per hook, when its last failure was logged and how many went unlogged since. */
  private readonly logged = new Map<ServerHook, { at: number; skipped: number }>();

  constructor(private readonly opts: PolicyHooksOptions) {}

  async quota(network: string, client: string, modelId: string): Promise<boolean> {
    if (!this.opts.policy(network, 'quota')) return true;
    // Counted only while the network has a quota policy: nothing is kept for the others.
    const requests: RequestCounts = this.counts.record(network, client);
    return this.call(network, 'quota', { client, modelId, requests }, (out) => QuotaOutput.parse(out).allow, () => true);
  }

  route(network: string, input: () => RouteHookInput): Promise<string[]> {
    return this.call(network, 'route', input, (out) => ExcludeOutput.parse(out).exclude ?? [], () => []);
  }

  placement(network: string, input: () => PlacementHookInput): Promise<string[]> {
    return this.call(network, 'placement', input, (out) => ExcludeOutput.parse(out).exclude ?? [], () => []);
  }

  /**
   * Whether a peer that proved its identity may join. The owner always may. A policy that fails
   * admits (the default); a sandbox too busy to ask it refuses with ERR_POLICY_BUSY, which the
   * peer retries, so a burst of hellos cannot slip past the policy.
   */
  async admission(network: string, peerId: string, capabilities: Capabilities): Promise<AdmissionVerdict> {
    if (this.opts.isOwner(network, peerId) || !this.opts.policy(network, 'admission')) return { admit: true };
    let busy: AigridError | undefined;
    const verdict = await this.call<AdmissionVerdict>(
      network,
      'admission',
      { peerId, capabilities },
      (out) => {
        const { admit, reason } = AdmissionOutput.parse(out);
        return admit ? { admit } : { admit, code: 'ERR_ADMISSION_REFUSED', reason: `network ${network} does not admit ${peerId}: ${clean(reason ?? 'its admission policy says no')}` };
      },
      () => ({ admit: true }),
      (error) => (busy = error.code === 'ERR_POLICY_BUSY' ? error : undefined),
    );
    if (busy) return { admit: false, code: 'ERR_POLICY_BUSY', reason: `network ${network} could not check ${peerId} now (its admission policy waits for the server's sandbox); try again` };
    return verdict;
  }

  /** Policies were created, changed or deleted: the sandbox loads ahead of use, placement re-runs. */
  changed(network: string, records: readonly PolicyRecord[]): void {
    this.warm(records);
    if (records.some((r) => r.hook === 'placement')) this.opts.replan?.(network);
  }

  /** Loads the sandbox now when any of these policies is for a server hook (a restart restored them, say). */
  warm(records: readonly PolicyRecord[]): void {
    if (records.some((r) => isServerHook(r.hook))) this.pool()?.warm();
  }

  /** The sandbox's workers and calls; undefined until a server-hook policy first needed it. */
  stats(): WorkerSandboxStats | undefined {
    return this.sandbox?.stats();
  }

  /** Terminates the sandbox's workers; hooks answer their defaults afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    await this.sandbox?.close();
  }

  private pool(): WorkerSandbox | undefined {
    if (this.closed) return undefined;
    return (this.sandbox ??= new WorkerSandbox({ log: this.opts.log, ...this.opts.sandbox }));
  }

  /**
   * Runs the network's policy for `hook` and reads its output with `read`; `fallback()` when
   * there is none, or it failed (reported, and told to `failed`).
   */
  private async call<T>(network: string, hook: ServerHook, input: unknown, read: (output: unknown) => T, fallback: () => T, failed?: (error: AigridError) => void): Promise<T> {
    const record = this.opts.policy(network, hook);
    const pool = record && this.pool();
    if (!record || !pool) return fallback();
    try {
      const args = typeof input === 'function' ? (input as () => unknown)() : input;
      const output = await pool.run({ name: record.id, code: record.code, parameters: record.parameters }, args, { network, hook, now: Date.now() }, network);
      try {
        return read(output);
      } catch (err) {
        throw new AigridError('ERR_POLICY_OUTPUT', `policy ${JSON.stringify(record.id)} answered what the ${hook} hook does not take: ${outputIssue(err)}`);
      }
    } catch (err) {
      const error = err instanceof AigridError ? err : new AigridError('ERR_POLICY_FAILED', errorMessage(err));
      this.report(network, hook, record.id, error);
      failed?.(error);
      return fallback();
    }
  }

  private report(network: string, hook: ServerHook, id: string, error: AigridError): void {
    try {
      this.opts.onFailure?.(hook);
    } catch {
      // A report that fails must not become the hook's failure.
    }
    // A policy failing on every call must not flood the log: one line per hook per 10 s.
    const now = Date.now();
    const last = this.logged.get(hook);
    if (last && now - last.at < LOG_EVERY_MS) {
      last.skipped++;
      return;
    }
    const skipped = last?.skipped ? ` (${last.skipped} more ${hook} policy failures since the last line)` : '';
    this.logged.set(hook, { at: now, skipped: 0 });
    this.opts.log(`${network}: ${hook} policy ${JSON.stringify(id)} failed, the default was used: ${error.code} ${JSON.stringify(error.message)}${skipped}`);
  }
}

function outputIssue(err: unknown): string {
  if (err instanceof z.ZodError) {
    const issue = err.issues[0]!;
    return `${issue.path.length ? issue.path.join('.') : 'the output'}: ${issue.message}`;
  }
  return errorMessage(err);
}

/** The policy's words go into a message to the peer: one line, no control characters. */
function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, ' ');
}
