// Frames kept a while as evidence. A hop keeps the input frames it received (the previous hop's
// signed outputs) and a client keeps the results of the sessions it may check, so when a check
// catches a hop, the client can show the coordinator exactly what that hop sent on. Bounded in
// bytes and time; when full, the owner (client) holding the most gives up its oldest frame first,
// so one client's sessions cannot push out another's evidence.
export const DEFAULT_RETAINED_BYTES = 64 * 1024 * 1024;
export const DEFAULT_RETAIN_MS = 5 * 60_000;

interface Kept {
  owner: string;
  payload: Uint8Array;
  at: number;
}

export class FrameRetention {
  /** `${sessionId}:${requestId}` -> frame, oldest first. */
  private readonly frames = new Map<string, Kept>();
  private readonly bytesOf = new Map<string, number>();
  private bytes = 0;

  constructor(
    private readonly budgetBytes = DEFAULT_RETAINED_BYTES,
    private readonly keepMs = DEFAULT_RETAIN_MS,
  ) {}

  get size(): number {
    return this.frames.size;
  }

  get retainedBytes(): number {
    return this.bytes;
  }

  keep(sessionId: string, requestId: number, owner: string, payload: Uint8Array, now = Date.now()): void {
    if (payload.byteLength > this.budgetBytes) return;
    const key = `${sessionId}:${requestId}`;
    this.remove(key);
    // A view into a larger buffer (a reassembled chunk) would keep all of it alive.
    const own = payload.byteOffset === 0 && payload.byteLength === payload.buffer.byteLength ? payload : payload.slice();
    this.frames.set(key, { owner, payload: own, at: now });
    this.add(owner, payload.byteLength);
    this.expire(now);
    while (this.bytes > this.budgetBytes) this.evictFromLargestOwner();
  }

  /** The frame, to its owner only. */
  get(sessionId: string, requestId: number, asker: string, now = Date.now()): Uint8Array | undefined {
    this.expire(now);
    const kept = this.frames.get(`${sessionId}:${requestId}`);
    return kept && kept.owner === asker ? kept.payload : undefined;
  }

  private expire(now: number): void {
    for (const [key, kept] of this.frames) {
      if (now - kept.at < this.keepMs) break; // oldest first: the rest are younger
      this.remove(key);
    }
  }

  private evictFromLargestOwner(): void {
    let largest: string | undefined;
    for (const [owner, n] of this.bytesOf) if (largest === undefined || n > this.bytesOf.get(largest)!) largest = owner;
    for (const [key, kept] of this.frames) {
      if (kept.owner === largest) return void this.remove(key);
    }
  }

  private remove(key: string): void {
    const kept = this.frames.get(key);
    if (!kept) return;
    this.frames.delete(key);
    this.add(kept.owner, -kept.payload.byteLength);
  }

  private add(owner: string, n: number): void {
    this.bytes += n;
    const total = (this.bytesOf.get(owner) ?? 0) + n;
    if (total > 0) this.bytesOf.set(owner, total);
    else this.bytesOf.delete(owner);
  }
}
