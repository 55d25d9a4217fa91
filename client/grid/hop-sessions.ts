// The sessions a serving peer takes part in: each one's route, this peer's place on it, and when
// it was last used, so sessions whose client went quiet are released after a timeout.
import type { SessionSetup } from '../../protocol/index.ts';

export interface HopSession {
  setup: SessionSetup;
  /** This peer's hop index on the route. */
  index: number;
  lastUsed: number;
}

export class HopSessions {
  private readonly sessions = new Map<string, HopSession>();
  private sweeper: ReturnType<typeof setInterval> | undefined;

  /** `onExpire` frees what a session holds (its KV caches) when it has been idle for `idleMs`. */
  constructor(
    private readonly idleMs: number,
    private readonly onExpire: (session: HopSession) => void,
  ) {
    this.sweeper = setInterval(() => this.sweep(), Math.max(100, Math.min(idleMs / 2, 30_000)));
    // The sweep alone must not keep a Node process alive.
    (this.sweeper as { unref?: () => void }).unref?.();
  }

  get size(): number {
    return this.sessions.size;
  }

  get(sessionId: string): HopSession | undefined {
    return this.sessions.get(sessionId);
  }

  add(setup: SessionSetup, index: number): HopSession {
    const session: HopSession = { setup, index, lastUsed: Date.now() };
    this.sessions.set(setup.sessionId, session);
    return session;
  }

  /** Marks a session used now. */
  touch(session: HopSession): void {
    session.lastUsed = Date.now();
  }

  delete(sessionId: string): HopSession | undefined {
    const session = this.sessions.get(sessionId);
    this.sessions.delete(sessionId);
    return session;
  }

  /** Sessions matching a test (e.g. of one model, or of one client). */
  filter(test: (session: HopSession) => boolean): HopSession[] {
    return [...this.sessions.values()].filter(test);
  }

  count(test: (session: HopSession) => boolean): number {
    let n = 0;
    for (const s of this.sessions.values()) if (test(s)) n++;
    return n;
  }

  sweep(now = Date.now()): void {
    for (const session of [...this.sessions.values()]) {
      if (now - session.lastUsed < this.idleMs) continue;
      this.sessions.delete(session.setup.sessionId);
      this.onExpire(session);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    this.sessions.clear();
  }
}
