// Per-session KV caches of a shard under a byte budget. A new session that does not fit evicts idle
// sessions, least recently used first; a later call on an evicted session is ERR_SESSION_EVICTED, so
// its client knows to replay the tokens. Sessions with a pass in flight are never evicted.
// With owners (the clients of the sessions), eviction is fair: the budget's sessions are shared
// equally among the owners holding any; an owner at or over its share makes room only from its own
// sessions, one under it only from owners over theirs, so no client can push another's sessions
// out beyond its share.
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
  /** Who a session belongs to (its client); without it every session is one owner's (plain LRU). */
  ownerOf?: (sessionId: string) => string | undefined;
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

  /** Makes a session, evicting idle ones (oldest first, fairly among owners) until it fits. */
  create(id: string): KvSession {
    if (this.sessions.has(id)) throw new AigridError('ERR_INVALID_ARGUMENT', `session ${id} already has a KV cache`);
    const { budgetBytes, sessionBytes } = this.options;
    const full = () => this.usage.usedBytes + sessionBytes > budgetBytes;
    if (full()) {
      const evictable = this.evictable(id);
      for (const otherId of evictable) {
        if (!full()) break;
        this.evict(otherId);
      }
    }
    if (full()) {
      throw new AigridError('ERR_KV_BUDGET', `no room for session ${id}: ${this.sessions.size} sessions hold ${this.usage.usedBytes} of ${budgetBytes} bytes and none may make room for it now (in flight, or within their client's share); try again later`);
    }
    const session: KvSession = { id, stores: this.options.create(id), busy: 0 };
    this.evicted.delete(id);
    this.sessions.set(id, session);
    return session;
  }

  /** Idle sessions the new session `id` may evict, least recently used first. */
  private evictable(id: string): string[] {
    const ownerOf = this.options.ownerOf ?? (() => undefined);
    const idle = [...this.sessions.values()].filter((s) => s.busy === 0).map((s) => s.id);
    const owner = ownerOf(id) ?? '';
    const held = new Map<string, number>();
    for (const sid of this.sessions.keys()) {
      const o = ownerOf(sid) ?? '';
      held.set(o, (held.get(o) ?? 0) + 1);
    }
    const owners = new Set([...held.keys(), owner]).size;
    const slots = Math.floor(this.options.budgetBytes / this.options.sessionBytes);
    const share = Math.max(1, Math.floor(slots / owners));
    if ((held.get(owner) ?? 0) >= share) return idle.filter((sid) => (ownerOf(sid) ?? '') === owner);
    return idle.filter((sid) => (held.get(ownerOf(sid) ?? '') ?? 0) > share);
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
