// Who has been told of whom. A member hears of another peer's updates and leave only when it was
// told of that peer: in its welcome, a join, a lookup, a route through it, or a signal from it.
// In a small network that is everyone (every join is announced to all); in a large one it is the
// few peers each member works with, so a join or a leave costs what its audience is, not the
// network's size. Each connection remembers a bounded number of peers, the most recent kept.
import type { Connection } from './connection.ts';

/** Peers one connection is kept informed of; the least recently told are dropped beyond it. */
export const MAX_TOLD_PER_CONNECTION = 512;

export class Directory {
  /** network -> peerId -> the connections told of it. */
  private readonly told = new Map<string, Map<string, Set<Connection>>>();
  /** connection -> the peers it was told of, least recent first. */
  private readonly knows = new Map<Connection, Set<string>>();

  /** `conn` was told of `peerId` (in its network): it hears of its updates and leave from now on. */
  note(conn: Connection, peerId: string): void {
    if (!conn.peer || conn.peer.peerId === peerId) return;
    let mine = this.knows.get(conn);
    if (!mine) this.knows.set(conn, (mine = new Set()));
    mine.delete(peerId);
    mine.add(peerId);
    let peers = this.told.get(conn.network);
    if (!peers) this.told.set(conn.network, (peers = new Map()));
    let audience = peers.get(peerId);
    if (!audience) peers.set(peerId, (audience = new Set()));
    audience.add(conn);
    if (mine.size > MAX_TOLD_PER_CONNECTION) this.unlink(conn, mine.values().next().value!);
  }

  /** The connections to tell of a change of `peerId`. */
  audience(network: string, peerId: string): Connection[] {
    return [...(this.told.get(network)?.get(peerId) ?? [])];
  }

  /** `peerId` left `network`: nobody is to hear of it any more. */
  forgetPeer(network: string, peerId: string): void {
    const peers = this.told.get(network);
    const audience = peers?.get(peerId);
    if (!peers || !audience) return;
    for (const conn of audience) this.knows.get(conn)?.delete(peerId);
    peers.delete(peerId);
    if (peers.size === 0) this.told.delete(network);
  }

  /** `conn` left: it hears of nobody. */
  forgetConnection(conn: Connection): void {
    const mine = this.knows.get(conn);
    if (!mine) return;
    for (const peerId of [...mine]) this.unlink(conn, peerId);
    this.knows.delete(conn);
  }

  /** How many (connection, peer) pairs are kept, for tests and the bound. */
  get size(): number {
    let n = 0;
    for (const mine of this.knows.values()) n += mine.size;
    return n;
  }

  private unlink(conn: Connection, peerId: string): void {
    this.knows.get(conn)?.delete(peerId);
    const peers = this.told.get(conn.network);
    const audience = peers?.get(peerId);
    if (!peers || !audience) return;
    audience.delete(conn);
    if (audience.size === 0) peers.delete(peerId);
    if (peers.size === 0) this.told.delete(conn.network);
  }
}
