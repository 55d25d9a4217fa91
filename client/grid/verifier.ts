// Spot-checks of what routes return. A share of sessions (more when a route passes a newcomer) is
// replayed, after it ends, on a second route that swaps one hop for other peers holding its
// layers; the two outputs must agree within a tolerance that honest peers on different backends
// meet. When they differ, a third route with yet another replacement decides: the hop in the
// minority is wrong. Wrong peers leave this client's routes at once, and every verdict goes to the
// coordinator, which keeps each key's reputation. Checks run after the session, so they never
// change what the client received.
import type { Route } from '../mesh/signaling-client.ts';
import type { Hop } from '../../protocol/index.ts';
import type { SessionRows } from './remote-session.ts';
import type { RouteSource } from './routes.ts';

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
}

/** A finished session as the client saw it: the route, its inputs, and each run's output. */
export interface RecordedSession {
  sessionId: string;
  route: Route;
  rows: SessionRows;
  /** Input rows at the end of each run, and what the route returned for that run. */
  runs: { end: number; output: Float32Array }[];
  draw: number;
}

/** Runs `rows` on a route in the given runs (input rows at the end of each), returning each run's output. */
export type Replay = (route: Route, rows: SessionRows, ends: readonly number[]) => Promise<Float32Array[]>;

export const DEFAULT_VERIFY_SHARE = 0.05;
export const DEFAULT_NEWCOMER_SHARE = 0.2;
export const DEFAULT_VERIFY_TOLERANCE = 0.02;
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

  /** Checks the session when its draw falls in the route's share; in the background. */
  consider(session: RecordedSession): void {
    const share = this.share(Boolean(session.route.newcomers?.length));
    if (session.draw >= share || session.runs.length === 0) return;
    if (this.running >= (this.options.concurrent ?? 2)) return;
    this.running++;
    void this.check(session)
      .then((event) => this.options.onCheck?.(event))
      .finally(() => this.running--);
  }

  /** Replays the session around one of its hops and decides who, if anyone, was wrong. */
  async check(session: RecordedSession): Promise<CheckEvent> {
    const { hops } = session.route;
    const peerId = this.pick(session.route);
    const ends = session.runs.map((r) => r.end);
    const first = session.runs.map((r) => r.output);
    const tolerance = this.options.tolerance ?? DEFAULT_VERIFY_TOLERANCE;
    const event: CheckEvent = { sessionId: session.sessionId, peerId, replacedBy: [], outcome: 'inconclusive', wrong: [], differences: [] };
    try {
      const second = await this.routes.replacing(hops, peerId, this.excluded());
      const secondOut = await this.replay(second, session.rows, ends);
      const d12 = difference(first, secondOut);
      event.differences.push(d12);
      const replacements2 = newPeers(hops, second.hops);
      event.replacedBy = replacements2;
      if (d12 <= tolerance) {
        event.outcome = 'agreed';
        this.report([peerId, ...replacements2].map((p) => ({ peerId: p, result: 'verified' })));
        return event;
      }
      const third = await this.routes.replacing(hops, peerId, [...this.excluded(), ...replacements2]);
      const thirdOut = await this.replay(third, session.rows, ends);
      const [d13, d23] = [difference(first, thirdOut), difference(secondOut, thirdOut)];
      event.differences.push(d13, d23);
      const replacements3 = newPeers(hops, third.hops);
      event.outcome = majority(d12, d13, d23, tolerance);
      if (event.outcome === 'inconclusive') return event; // no clear majority: blame nobody at random
      event.wrong = event.outcome === 'caught' ? [peerId] : replacements2;
      for (const p of event.wrong) this.exclude(p, WRONG_PEER_MS);
      const right = [peerId, ...replacements2, ...replacements3].filter((p) => !event.wrong.includes(p));
      this.report([...event.wrong.map((p) => ({ peerId: p, result: 'wrong' as const })), ...right.map((p) => ({ peerId: p, result: 'verified' as const }))]);
    } catch (err) {
      // No other peer holds the layers, or a replacement failed: nothing is decided.
      event.outcome = 'failed';
      event.error = (err as Error).message;
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

/**
 * Who is in the minority of three routes, from their pairwise differences (1: the session's own
 * route, 2 and 3: the checked hop swapped for others): 'caught' when 2 and 3 agree and 1 differs,
 * 'replacement-wrong' when 1 and 3 agree and 2 differs. Two agree within the tolerance, and the
 * third differs from both by more than it and by several times as much as the two do from each
 * other; else 'inconclusive' (when another hop on every route is unsteady, a liar adding noise,
 * all three differ by about the same).
 */
export function majority(d12: number, d13: number, d23: number, tolerance: number): 'caught' | 'replacement-wrong' | 'inconclusive' {
  if (minority(d23, d12, d13, tolerance)) return 'caught';
  if (minority(d13, d12, d23, tolerance)) return 'replacement-wrong';
  return 'inconclusive';
}

function minority(pair: number, other1: number, other2: number, tolerance: number): boolean {
  const apart = Math.max(tolerance, MAJORITY_MARGIN * pair);
  return pair <= tolerance && other1 > apart && other2 > apart;
}

/** How many times further the minority must be from each of the two that agree than they are from each other. */
const MAJORITY_MARGIN = 3;

/** Peers on `next` that were not on `before`. */
function newPeers(before: readonly Hop[], next: readonly Hop[]): string[] {
  const had = new Set(before.map((h) => h.peerId));
  return [...new Set(next.map((h) => h.peerId).filter((p) => !had.has(p)))];
}

/** The largest relative L2 difference between two routes' outputs, run by run. */
export function difference(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let r = 0; r < a.length; r++) {
    const x = a[r]!;
    const y = b[r]!;
    if (x.length !== y.length) return Infinity;
    let diff = 0;
    let nx = 0;
    let ny = 0;
    for (let i = 0; i < x.length; i++) {
      const d = x[i]! - y[i]!;
      diff += d * d;
      nx += x[i]! * x[i]!;
      ny += y[i]! * y[i]!;
    }
    const rel = Math.sqrt(diff) / Math.max(Math.sqrt(Math.max(nx, ny)), 1e-6);
    if (Number.isNaN(rel)) return Infinity; // a NaN output agrees with nothing
    worst = Math.max(worst, rel);
  }
  return worst;
}
