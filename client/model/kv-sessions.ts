// Per-session KV caches of a shard under a byte budget. A new session that does not fit evicts idle
// sessions, least recently used first; a later call on an evicted session is ERR_SESSION_EVICTED, so
// its client knows to replay the tokens. Sessions with a pass in flight are never evicted.
import { AigridError } from '../../protocol/index.ts';
import type { KvStore } from './backend/types.ts';

export interface KvSessionsOptions {
  budgetBytes: number;
  /** Bytes one session's stores take (every layer of the shard). */
  sessionBytes: number;
  /** One store per layer for a new session. */
  create: (sessionId: string) => KvStore[];
  /** Evicted ids remembered for ERR_SESSION_EVICTED (default 4096). */
  rememberEvicted?: number;
}

export interface KvSession {
  readonly id: string;
  readonly stores: KvStore[];
  /** Passes in flight. */
  busy: number;
}

export interface KvUsage {
  usedBytes: number;
  budgetBytes: number;
  sessionBytes: number;
  sessions: number;
}

export class KvSessions {
  /** In least-recently-used order: a use moves a session to the end. */
  private readonly sessions = new Map<string, KvSession>();
  private readonly evicted = new Set<string>();
  private readonly remember: number;

  constructor(private readonly options: KvSessionsOptions) {
    const { budgetBytes, sessionBytes } = options;
    if (!(budgetBytes >= 0) || !Number.isFinite(budgetBytes)) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `kvBudgetBytes must be a finite number >= 0, got ${budgetBytes}`);
    }
    if (sessionBytes > budgetBytes) {
      throw new AigridError('ERR_KV_BUDGET', `one session's KV cache needs ${sessionBytes} bytes, over the budget of ${budgetBytes}; raise kvBudgetBytes or lower maxSessionTokens`);
    }
    this.remember = options.rememberEvicted ?? 4096;
  }

  get usage(): KvUsage {
    return {
      usedBytes: this.sessions.size * this.options.sessionBytes,
      budgetBytes: this.options.budgetBytes,
      sessionBytes: this.options.sessionBytes,
      sessions: this.sessions.size,
    };
  }

  /** Session ids from least to most recently used. */
  ids(): string[] {
    return [...this.sessions.keys()];
  }

  /** The live session (now the most recently used), 'evicted', or undefined for an unknown id. */
  lookup(id: string): KvSession | 'evicted' | undefined {
    const session = this.sessions.get(id);
    if (session) {
      this.sessions.delete(id);
      this.sessions.set(id, session);
      return session;
    }
    return this.evicted.has(id) ? 'evicted' : undefined;
  }

  /** The live session, leaving the order of use alone. */
  peek(id: string): KvSession | undefined {
    return this.sessions.get(id);
  }

  /** Makes a session, evicting idle ones (oldest first) until it fits. */
  create(id: string): KvSession {
    if (this.sessions.has(id)) throw new AigridError('ERR_INVALID_ARGUMENT', `session ${id} already has a KV cache`);
    const { budgetBytes, sessionBytes } = this.options;
    for (const [otherId, other] of this.sessions) {
      if (this.usage.usedBytes + sessionBytes <= budgetBytes) break;
      if (other.busy === 0) this.evict(otherId);
    }
    if (this.usage.usedBytes + sessionBytes > budgetBytes) {
      throw new AigridError('ERR_KV_BUDGET', `no room for session ${id}: ${this.sessions.size} sessions with passes in flight hold ${this.usage.usedBytes} of ${budgetBytes} bytes; try again when they finish`);
    }
    const session: KvSession = { id, stores: this.options.create(id), busy: 0 };
    this.evicted.delete(id);
    this.sessions.set(id, session);
    return session;
  }

  /** Frees a session's caches; true if it existed. A released id is simply unknown afterwards. */
  release(id: string): boolean {
    const session = this.sessions.get(id);
    this.evicted.delete(id);
    if (!session) return false;
    this.sessions.delete(id);
    for (const store of session.stores) store.destroy();
    return true;
  }

  /** Frees a session's caches and remembers the id, so its next call is ERR_SESSION_EVICTED. */
  evict(id: string): void {
    if (!this.release(id)) return;
    this.evicted.add(id);
    if (this.evicted.size > this.remember) this.evicted.delete(this.evicted.values().next().value!);
  }

  destroy(): void {
    for (const id of [...this.sessions.keys()]) this.release(id);
    this.evicted.clear();
  }
}
