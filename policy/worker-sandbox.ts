// Policies run off the caller's thread: a pool of worker_threads, each with its own PolicySandbox
// (worker-entry.ts). QuickJS asks its interrupt handler only every 10,000 branches, so a policy
// looping over heavy built-in calls can hold a thread for seconds past its time limit; here each
// call has a hard wall-clock deadline after which its worker is terminated (V8 stops WebAssembly
// mid-loop) and replaced. A warm spare worker takes over at once, so other callers do not wait
// for the replacement to load. Node only: the signaling server uses it, pages never load it.
import { Worker } from 'node:worker_threads';
import { AigridError, isErrorCode } from '../protocol/errors.ts';
import { DEFAULT_POLICY_LIMITS, policyLimits, type PolicyLimits } from './limits.ts';

/** What a worker is asked to run: the policy's code and its three arguments. */
export interface WorkerJob {
  id: number;
  name: string;
  code: string;
  parameters: unknown;
  input: unknown;
  context: unknown;
}

export type WorkerAnswer = { id: number; ok: true; output: unknown } | { id: number; ok: false; code: string; message: string };

export interface WorkerPolicy {
  /** Names the policy in errors and logs. */
  name: string;
  /** A script defining function eval(parameters, input, context) (see sandbox.ts). */
  code: string;
  parameters?: unknown;
}

export interface WorkerSandboxOptions {
  /** Calls run at once, one per worker (default 1). A spare worker is kept loaded besides. */
  workers?: number;
  /** The sandbox's limits in every worker (policy/limits.ts). */
  limits?: Partial<PolicyLimits>;
  /** Calls waiting in all (default 256); more are refused ERR_POLICY_BUSY. */
  maxQueued?: number;
  /** Calls of one group (a network) waiting or running (default 8); more are refused ERR_POLICY_BUSY. */
  maxPerGroup?: number;
  /** How long a call waits for a worker before it is refused ERR_POLICY_BUSY (default 1 s). */
  maxWaitMs?: number;
  /** The same, while no worker has loaded yet since the pool started (default 5 s). */
  startWaitMs?: number;
  /** A group whose call was terminated at the deadline has its calls refused this long (default 60 s). */
  penaltyMs?: number;
  log?: (line: string) => void;
}

export interface WorkerSandboxStats {
  /** Workers loaded (running a call or idle; the spare among them). */
  ready: number;
  /** Workers still loading. */
  loading: number;
  running: number;
  queued: number;
  /** Workers terminated at a deadline, or lost. */
  restarts: number;
}

/** The hard deadline of a call: four times the policy's time limit, at least 200 ms. */
export function hardDeadlineMs(limits: Pick<PolicyLimits, 'timeMs'>): number {
  return Math.max(200, 4 * limits.timeMs);
}

const ENTRY = new URL('./worker-entry.ts', import.meta.url);
// The worker loads TypeScript the way the project's commands do (tsx, bin/register.js); the
// parent's own flags (vitest's, a debugger's) are not passed on.
const REGISTER = new URL('../bin/register.js', import.meta.url).href;
/** The worker's own JavaScript heap (inputs, outputs, compiled policies); QuickJS's memory is its WebAssembly memory, capped in engine.ts. */
const WORKER_HEAP_MB = 256;
const MAX_PENALIZED_GROUPS = 1024;
const MAX_RESTART_BACKOFF_MS = 30_000;

interface Job {
  id: number;
  group: string;
  message: WorkerJob;
  resolve: (output: unknown) => void;
  reject: (error: AigridError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  job: Job | undefined;
}

export class WorkerSandbox {
  readonly limits: Readonly<PolicyLimits>;
  /** Workers terminated at a deadline, and workers that died or failed to load. */
  private restarts = 0;
  private readonly workers: number;
  private readonly maxQueued: number;
  private readonly maxPerGroup: number;
  private readonly maxWaitMs: number;
  private readonly startWaitMs: number;
  private readonly penaltyMs: number;
  private readonly log: (line: string) => void;
  private readonly slots: Slot[] = [];
  /** Waiting calls by group, groups in turn order: each dispatch takes the first group's oldest call. */
  private readonly queues = new Map<string, Job[]>();
  /** Calls waiting or running per group. */
  private readonly perGroup = new Map<string, number>();
  /** Groups whose calls are refused until the time given. */
  private readonly penalized = new Map<string, number>();
  private queued = 0;
  private nextId = 1;
  private everReady = false;
  private started = false;
  private closed = false;
  private backoffMs = 500;
  private retry: ReturnType<typeof setTimeout> | undefined;

  constructor(options: WorkerSandboxOptions = {}) {
    this.limits = Object.freeze(policyLimits(DEFAULT_POLICY_LIMITS, options.limits, 'sandbox'));
    this.workers = count('workers', options.workers ?? 1);
    this.maxQueued = count('maxQueued', options.maxQueued ?? 256);
    this.maxPerGroup = count('maxPerGroup', options.maxPerGroup ?? 8);
    this.maxWaitMs = count('maxWaitMs', options.maxWaitMs ?? 1000);
    this.startWaitMs = count('startWaitMs', options.startWaitMs ?? 5_000);
    this.penaltyMs = count('penaltyMs', options.penaltyMs ?? 60_000);
    this.log = options.log ?? (() => {});
  }

  /** Starts loading the workers now rather than at the first call (they take about a second). */
  warm(): void {
    if (this.closed) return;
    this.started = true;
    this.fill();
  }

  /**
   * Runs `eval(policy.parameters, input, context)` in a worker: the output, or an AigridError
   * (the sandbox's ERR_POLICY_*; ERR_POLICY_LIMIT when the hard deadline passed; ERR_POLICY_BUSY
   * when the queue or the group's share is full or no worker was free in time). `group` is
   * who the call is for (a network): groups take turns, and each has a bounded share.
   */
  run(policy: WorkerPolicy, input: unknown, context: unknown, group: string = policy.name): Promise<unknown> {
    if (this.closed) return Promise.reject(new AigridError('ERR_NOT_AVAILABLE', 'the policy sandbox is closed'));
    const until = this.penalized.get(group);
    if (until !== undefined && until > Date.now()) {
      return Promise.reject(new AigridError('ERR_POLICY_LIMIT', `policy ${JSON.stringify(policy.name)} not run: a policy of ${JSON.stringify(group)} ran past its hard deadline lately; its hooks use their defaults for ${Math.ceil((until - Date.now()) / 1000)} s more`));
    }
    if (until !== undefined) this.penalized.delete(group);
    const inGroup = this.perGroup.get(group) ?? 0;
    if (inGroup >= this.maxPerGroup) {
      return Promise.reject(new AigridError('ERR_POLICY_BUSY', `policy ${JSON.stringify(policy.name)} not run: ${inGroup} calls of ${JSON.stringify(group)} are waiting or running, the most one group has`));
    }
    if (this.queued >= this.maxQueued) {
      return Promise.reject(new AigridError('ERR_POLICY_BUSY', `policy ${JSON.stringify(policy.name)} not run: ${this.queued} calls are waiting, the most the sandbox takes`));
    }
    this.warm();
    return new Promise<unknown>((resolve, reject) => {
      const id = this.nextId++;
      const message: WorkerJob = { id, name: policy.name, code: policy.code, parameters: policy.parameters ?? null, input, context };
      const job: Job = { id, group, message, resolve, reject, timer: undefined };
      const wait = this.everReady ? this.maxWaitMs : this.startWaitMs;
      job.timer = setTimeout(() => {
        this.dequeue(job);
        this.settle(job, new AigridError('ERR_POLICY_BUSY', `policy ${JSON.stringify(policy.name)} not run: no sandbox worker was free within ${wait} ms`));
      }, wait);
      job.timer.unref?.();
      this.perGroup.set(group, inGroup + 1);
      let queue = this.queues.get(group);
      if (!queue) this.queues.set(group, (queue = []));
      queue.push(job);
      this.queued++;
      this.dispatch();
    });
  }

  stats(): WorkerSandboxStats {
    const ready = this.slots.filter((s) => s.ready).length;
    return { ready, loading: this.slots.length - ready, running: this.slots.filter((s) => s.job).length, queued: this.queued, restarts: this.restarts };
  }

  /** Ends every call (ERR_NOT_AVAILABLE) and terminates the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retry);
    const closedError = () => new AigridError('ERR_NOT_AVAILABLE', 'the policy sandbox is closed');
    for (const queue of this.queues.values()) for (const job of queue) this.settle(job, closedError());
    this.queues.clear();
    this.queued = 0;
    const slots = this.slots.splice(0);
    for (const slot of slots) if (slot.job) this.settle(slot.job, closedError());
    await Promise.all(slots.map((slot) => slot.worker.terminate().catch(() => 0)));
  }

  /** Starts workers until there are `workers` plus a spare (unless a failed start is backing off). */
  private fill(): void {
    if (this.closed || !this.started || this.retry) return;
    while (this.slots.length < this.workers + 1) this.spawn();
  }

  private spawn(): void {
    const worker = new Worker(ENTRY, {
      execArgv: ['--import', REGISTER],
      workerData: { limits: this.limits },
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
    });
    worker.unref();
    const slot: Slot = { worker, ready: false, job: undefined };
    this.slots.push(slot);
    worker.on('message', (message: unknown) => {
      if (!slot.ready) {
        slot.ready = this.everReady = true;
        this.backoffMs = 500;
        return this.dispatch();
      }
      this.answered(slot, message as WorkerAnswer);
    });
    worker.on('error', (err) => this.lost(slot, `its worker failed: ${err.message}`));
    worker.on('exit', (code) => this.lost(slot, `its worker exited (code ${code})`));
  }

  private answered(slot: Slot, answer: WorkerAnswer): void {
    const job = slot.job;
    if (!job || answer.id !== job.id) return;
    slot.job = undefined;
    if (answer.ok) this.settle(job, undefined, answer.output);
    else this.settle(job, new AigridError(isErrorCode(answer.code) ? answer.code : 'ERR_POLICY_FAILED', answer.message));
    this.dispatch();
  }

  /** A worker that died or failed to load is replaced; one that never loaded makes the next start wait. */
  private lost(slot: Slot, why: string): void {
    const index = this.slots.indexOf(slot);
    if (index < 0) return; // terminated here, or already handled
    this.slots.splice(index, 1);
    this.restarts++;
    if (slot.job) this.settle(slot.job, new AigridError('ERR_POLICY_LIMIT', `policy ${JSON.stringify(slot.job.message.name)}: ${why}`));
    if (this.closed) return;
    this.log(`policy sandbox: ${why}; starting another`);
    if (!slot.ready) {
      // A worker that cannot load (a missing module, no memory) would fail again at once.
      if (this.retry) return;
      this.retry = setTimeout(() => {
        this.retry = undefined;
        this.fill();
      }, this.backoffMs);
      this.retry.unref?.();
      this.backoffMs = Math.min(this.backoffMs * 2, MAX_RESTART_BACKOFF_MS);
      return;
    }
    this.fill();
    this.dispatch();
  }

  /** Hands waiting calls to idle ready workers, at most `workers` running at once, groups in turn. */
  private dispatch(): void {
    for (;;) {
      if (this.queued === 0) return;
      if (this.slots.filter((s) => s.job).length >= this.workers) return;
      const slot = this.slots.find((s) => s.ready && !s.job);
      if (!slot) return;
      const [group, queue] = this.queues.entries().next().value!;
      const job = queue.shift()!;
      this.queued--;
      this.queues.delete(group);
      if (queue.length) this.queues.set(group, queue); // to the back of the turn order
      clearTimeout(job.timer);
      slot.job = job;
      const deadline = hardDeadlineMs(this.limits);
      job.timer = setTimeout(() => this.overran(slot, job, deadline), deadline);
      job.timer.unref?.();
      try {
        slot.worker.postMessage(job.message);
      } catch (err) {
        // Arguments that cannot be copied (not JSON-like): the call's own fault, not the worker's.
        slot.job = undefined;
        this.settle(job, new AigridError('ERR_INVALID_ARGUMENT', `policy ${JSON.stringify(job.message.name)}: its arguments cannot be sent to the sandbox (${(err as Error).message})`));
      }
    }
  }

  /** The call passed its hard deadline: its worker is terminated and replaced, its group paused. */
  private overran(slot: Slot, job: Job, deadline: number): void {
    if (slot.job !== job) return;
    const index = this.slots.indexOf(slot);
    if (index >= 0) this.slots.splice(index, 1);
    this.restarts++;
    void slot.worker.terminate().catch(() => 0);
    this.penalize(job.group);
    this.log(`policy sandbox: policy ${JSON.stringify(job.message.name)} of ${JSON.stringify(job.group)} ran past the hard deadline of ${deadline} ms; its worker was terminated`);
    this.settle(job, new AigridError('ERR_POLICY_LIMIT', `policy ${JSON.stringify(job.message.name)} ran past the hard deadline of ${deadline} ms and was terminated`));
    this.fill();
    this.dispatch();
  }

  private penalize(group: string): void {
    this.penalized.delete(group);
    this.penalized.set(group, Date.now() + this.penaltyMs);
    if (this.penalized.size > MAX_PENALIZED_GROUPS) this.penalized.delete(this.penalized.keys().next().value!);
  }

  private dequeue(job: Job): void {
    const queue = this.queues.get(job.group);
    const index = queue?.indexOf(job) ?? -1;
    if (index < 0) return;
    queue!.splice(index, 1);
    this.queued--;
    if (queue!.length === 0) this.queues.delete(job.group);
  }

  private settle(job: Job, error: AigridError | undefined, output?: unknown): void {
    clearTimeout(job.timer);
    const left = (this.perGroup.get(job.group) ?? 1) - 1;
    if (left > 0) this.perGroup.set(job.group, left);
    else this.perGroup.delete(job.group);
    if (error) job.reject(error);
    else job.resolve(output);
  }
}

function count(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new AigridError('ERR_INVALID_ARGUMENT', `policy sandbox: ${name} must be a positive integer, got ${value}`);
  return value;
}
