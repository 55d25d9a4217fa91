// Spot-checks of what routes return. A share of sessions (more when a route passes a newcomer) is
// replayed, after it ends, on a second route that swaps one hop for other peers holding its
// layers; the two outputs must agree within a tolerance that honest peers on different backends
// meet. When they differ, a third route with yet another replacement decides: the hop in the
// minority is wrong. Wrong peers leave this client's routes at once. Verified work is reported to
// the coordinator, which keeps each key's reputation; a wrong result counts there only with the
// signed evidence of the three runs (accuser.ts). Checks run after the session, so they never
// change what the client received.
import type { Route } from '../mesh/signaling-client.ts';
import { DEFAULT_VERIFY_TOLERANCE, difference, Inconclusive, majority, type Hop } from '../../protocol/index.ts';
import type { SessionRows } from './remote-session.ts';
import type { RouteSource } from './routes.ts';
import type { RunRef } from './accuser.ts';

export interface VerifyOptions {
  /** Share of sessions checked (default 0.05). */
  share?: number;
  /** Share checked when the route passes a newcomer, a key with little verified work (default 0.2). */
  newcomerShare?: number;
  /** Largest relative L2 difference between two routes' outputs that still agrees (default 0.02). */
  tolerance?: number;
  /** Checks running at once, at most; sessions past it go unchecked (default 2). */
  concurrent?: number;
  random?: () => number;
  /** Sends verdicts on to the coordinator. */
  report?: (verdicts: PeerVerdict[]) => void;
  /** Hears each check's outcome (tests, benchmarks, the app's activity log). */
  onCheck?: (event: CheckEvent) => void;
  /**
   * Shows the coordinator the evidence against a hop caught alone in the minority: `runs[0]` is
   * its run, the others the two that agreed; answers what the coordinator made of it.
   */
  accuse?: (accused: string, runs: readonly [RunRef, RunRef, RunRef], requestId: number) => Promise<string>;
  /** The check of these sessions (the checked one and its replays) is over: their evidence may go. */
  settled?: (sessionIds: string[]) => void;
}

export interface PeerVerdict {
  peerId: string;
  result: 'verified' | 'wrong' | 'timeout';
}

export interface CheckEvent {
  sessionId: string;
  /** The hop whose work was checked, and the peers the second route put in its place. */
  peerId: string;
  replacedBy: string[];
  outcome: 'agreed' | 'caught' | 'replacement-wrong' | 'inconclusive' | 'failed';
  /** Peers found wrong. */
  wrong: string[];
  /** Relative differences: route 2 against route 1, then route 3 against 1 and 2 when it ran. */
  differences: number[];
  error?: string;
  /** What the coordinator made of the evidence, when a single hop was caught. */
  accusation?: string;
}

/** A finished session as the client saw it: the route, its inputs, and each run's output. */
export interface RecordedSession {
  sessionId: string;
  /** The session's id on its route (the hops' and receipts' name for it). */
  remoteId: string;
  route: Route;
  rows: SessionRows;
  /** Input rows at the end of each run, what the route returned for it, and the run's last request id. */
  runs: { end: number; output: Float32Array; request: number }[];
  draw: number;
}

/** A replay's outputs, run by run, and its session's id on the route. */
export interface Replayed {
  outputs: Float32Array[];
  sessionId: string;
}

/** Runs `rows` on a route in the given runs (input rows at the end of each), returning each run's output. */
export type Replay = (route: Route, rows: SessionRows, ends: readonly number[]) => Promise<Replayed>;

export const DEFAULT_VERIFY_SHARE = 0.05;
export const DEFAULT_NEWCOMER_SHARE = 0.2;
/** How long a peer found wrong stays off this client's routes. */
export const WRONG_PEER_MS = 60 * 60_000;

export class Verifier {
  private running = 0;

  constructor(
    private readonly routes: Required<Pick<RouteSource, 'replacing'>>,
    private readonly replay: Replay,
    private readonly exclude: (peerId: string, ms: number) => void,
    private readonly excluded: () => string[],
    private readonly options: VerifyOptions = {},
  ) {}

  /** A draw in [0, 1) for a new session. */
  draw(): number {
    return (this.options.random ?? Math.random)();
  }

  /** Whether a session with this draw might be checked, so its outputs must be kept. */
  mayCheck(draw: number): boolean {
    return draw < Math.max(this.share(false), this.share(true));
  }

  /** Checks the session when its draw falls in the route's share, in the background; whether it does. */
  consider(session: RecordedSession): boolean {
    const share = this.share(Boolean(session.route.newcomers?.length));
    if (session.draw >= share || session.runs.length === 0) return false;
    if (this.running >= (this.options.concurrent ?? 2)) return false;
    this.running++;
    void this.check(session)
      .then((event) => this.options.onCheck?.(event))
      .finally(() => this.running--);
    return true;
  }

  /** Replays the session around one of its hops and decides who, if anyone, was wrong. */
  async check(session: RecordedSession): Promise<CheckEvent> {
    const { hops } = session.route;
    const peerId = this.pick(session.route);
    const ends = session.runs.map((r) => r.end);
    const first = session.runs.map((r) => r.output);
    const tolerance = this.options.tolerance ?? DEFAULT_VERIFY_TOLERANCE;
    const event: CheckEvent = { sessionId: session.sessionId, peerId, replacedBy: [], outcome: 'inconclusive', wrong: [], differences: [] };
    const sessions = [session.remoteId];
    try {
      const second = await this.routes.replacing(hops, peerId, this.excluded());
      const run2 = await this.replay(second, session.rows, ends);
      sessions.push(run2.sessionId);
      const d12 = difference(first, run2.outputs);
      event.differences.push(d12);
      const replacements2 = newPeers(hops, second.hops);
      event.replacedBy = replacements2;
      if (d12 <= tolerance) {
        event.outcome = 'agreed';
        this.report([peerId, ...replacements2].map((p) => ({ peerId: p, result: 'verified' })));
        return event;
      }
      const third = await this.routes.replacing(hops, peerId, [...this.excluded(), ...replacements2]);
      const run3 = await this.replay(third, session.rows, ends);
      sessions.push(run3.sessionId);
      const [d13, d23] = [difference(first, run3.outputs), difference(run2.outputs, run3.outputs)];
      event.differences.push(d13, d23);
      const replacements3 = newPeers(hops, third.hops);
      event.outcome = majority(d12, d13, d23, tolerance);
      if (event.outcome === 'inconclusive') return event; // no clear majority: blame nobody at random
      event.wrong = event.outcome === 'caught' ? [peerId] : replacements2;
      // A wrong result counts at the coordinator only with evidence: the runs as they were signed.
      const [r1, r2, r3] = [
        { route: session.route, sessionId: session.remoteId, outputs: first },
        { route: second, ...run2 },
        { route: third, ...run3 },
      ];
      const [accused, ...agreeing] = event.outcome === 'caught' ? [r1, r2, r3] : [r2, r1, r3];
      if (event.wrong.length === 1 && this.options.accuse) {
        const request = session.runs[worstRun(accused.outputs, agreeing[0]!.outputs)]!.request;
        try {
          event.accusation = await this.options.accuse(event.wrong[0]!, [accused, ...agreeing] as [RunRef, RunRef, RunRef], request);
        } catch (err) {
          event.accusation = `not sent: ${(err as Error).message}`;
          // Its own signed work does not convict it: it was given other input than its
          // replacements (a hop before it differed on that route only), or its output agrees
          // with theirs (a hop after it did). Nobody is blamed at random.
          if (err instanceof Inconclusive) [event.outcome, event.wrong] = ['inconclusive', []];
        }
      }
      for (const p of event.wrong) this.exclude(p, WRONG_PEER_MS);
      const right = [peerId, ...replacements2, ...replacements3].filter((p) => !event.wrong.includes(p));
      this.report(right.map((p) => ({ peerId: p, result: 'verified' as const })));
    } catch (err) {
      // No other peer holds the layers, or a replacement failed: nothing is decided.
      event.outcome = 'failed';
      event.error = (err as Error).message;
    } finally {
      this.options.settled?.(sessions);
    }
    return event;
  }

  private share(newcomer: boolean): number {
    return newcomer ? (this.options.newcomerShare ?? DEFAULT_NEWCOMER_SHARE) : (this.options.share ?? DEFAULT_VERIFY_SHARE);
  }

  /** The hop to check: a newcomer's when the route has one, else any. */
  private pick(route: Route): string {
    const peers = route.hops.map((h) => h.peerId);
    const newcomers = peers.filter((p) => route.newcomers?.includes(p));
    const from = newcomers.length ? newcomers : peers;
    return from[Math.floor(this.draw() * from.length)]!;
  }

  private report(verdicts: PeerVerdict[]): void {
    // At most 16 per message, as the protocol takes.
    for (let i = 0; i < verdicts.length; i += 16) this.options.report?.(verdicts.slice(i, i + 16));
  }
}

/** The run where two runs' outputs differ most. */
function worstRun(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let worst = 0;
  let most = -1;
  for (let r = 0; r < a.length; r++) {
    const d = difference([a[r]!], [b[r]!]);
    if (d > most) [worst, most] = [r, d];
  }
  return worst;
}

/** Peers on `next` that were not on `before`. */
function newPeers(before: readonly Hop[], next: readonly Hop[]): string[] {
  const had = new Set(before.map((h) => h.peerId));
  return [...new Set(next.map((h) => h.peerId).filter((p) => !had.has(p)))];
}
