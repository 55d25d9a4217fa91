// Who is in which network. The server keeps sockets in its own connection map and only PeerInfo
// here, so a shared store (e.g. Redis) can later replace MemoryRegistry without touching sockets.
// Methods are async for that reason, even though the in-memory store answers at once.
import type { PeerInfo } from '../protocol/index.ts';

export interface RegistryStore {
  /** Inserts or replaces the peer with this peerId in the network. */
  add(network: string, peer: PeerInfo): Promise<void>;
  /** Removes the peer; true when it was there. An emptied network disappears. */
  remove(network: string, peerId: string): Promise<boolean>;
  get(network: string, peerId: string): Promise<PeerInfo | undefined>;
  /** Peers of one network in join order; empty for an unknown network. */
  list(network: string): Promise<PeerInfo[]>;
  /** Names of the networks that have at least one peer. */
  networks(): Promise<string[]>;
  /** Peers in one network, or in all networks when none is named. */
  count(network?: string): Promise<number>;
}

export class MemoryRegistry implements RegistryStore {
  private readonly byNetwork = new Map<string, Map<string, PeerInfo>>();
  private total = 0;

  async add(network: string, peer: PeerInfo): Promise<void> {
    let peers = this.byNetwork.get(network);
    if (!peers) {
      peers = new Map();
      this.byNetwork.set(network, peers);
    }
    if (!peers.has(peer.peerId)) this.total++;
    peers.set(peer.peerId, peer);
  }

  async remove(network: string, peerId: string): Promise<boolean> {
    const peers = this.byNetwork.get(network);
    if (!peers?.delete(peerId)) return false;
    this.total--;
    if (peers.size === 0) this.byNetwork.delete(network);
    return true;
  }

  async get(network: string, peerId: string): Promise<PeerInfo | undefined> {
    return this.byNetwork.get(network)?.get(peerId);
  }

  async list(network: string): Promise<PeerInfo[]> {
    return [...(this.byNetwork.get(network)?.values() ?? [])];
  }

  async networks(): Promise<string[]> {
    return [...this.byNetwork.keys()];
  }

  async count(network?: string): Promise<number> {
    return network === undefined ? this.total : (this.byNetwork.get(network)?.size ?? 0);
  }
}
