// First-fit allocation over a shared WebAssembly.Memory, for the weights and scratch of the CPU
// kernels (cpu-linear.ts, ggml-linear.ts). Blocks are 64-byte aligned (a cache line); address 0 is
// never handed out, so 0 means "no room".

const PAGE = 65536;
const ALIGN = 64;

export class WasmHeap {
  private readonly free: { addr: number; size: number }[] = [];
  private readonly sizes = new Map<number, number>();

  constructor(readonly memory: WebAssembly.Memory, private readonly maxPages: number) {
    this.free.push({ addr: ALIGN, size: memory.buffer.byteLength - ALIGN });
  }

  /** Bytes handed out and not yet released. */
  get used(): number {
    let total = 0;
    for (const size of this.sizes.values()) total += size;
    return total;
  }

  /** The size of a block handed out (rounded up from what was asked), or undefined. */
  sizeOf(addr: number): number | undefined {
    return this.sizes.get(addr);
  }

  /** A block of at least `bytes`, or 0 when the memory cannot grow that far. */
  alloc(bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    let i = this.free.findIndex((f) => f.size >= size);
    if (i < 0 && this.grow(size)) i = this.free.findIndex((f) => f.size >= size);
    if (i < 0) return 0;
    const block = this.free[i]!;
    const addr = block.addr;
    if (block.size === size) this.free.splice(i, 1);
    else this.free[i] = { addr: addr + size, size: block.size - size };
    this.sizes.set(addr, size);
    return addr;
  }

  release(addr: number): void {
    const size = this.sizes.get(addr);
    if (size === undefined) return;
    this.sizes.delete(addr);
    let i = 0;
    while (i < this.free.length && this.free[i]!.addr < addr) i++;
    this.free.splice(i, 0, { addr, size });
    const cur = this.free[i]!, after = this.free[i + 1], before = this.free[i - 1];
    if (after && cur.addr + cur.size === after.addr) {
      cur.size += after.size;
      this.free.splice(i + 1, 1);
    }
    if (before && before.addr + before.size === cur.addr) {
      before.size += cur.size;
      this.free.splice(i, 1);
    }
  }

  private grow(size: number): boolean {
    const end = this.memory.buffer.byteLength;
    const last = this.free[this.free.length - 1];
    const tail = last && last.addr + last.size === end ? last.size : 0;
    // Grow by what is missing, and at least 16 MiB or an eighth of the heap, so loads grow rarely.
    const want = Math.max(size - tail, 16 << 20, end / 8);
    const pages = Math.min(Math.ceil(want / PAGE), this.maxPages - end / PAGE);
    if (pages * PAGE < size - tail) return false;
    try {
      this.memory.grow(pages);
    } catch {
      return false;
    }
    if (tail) last!.size += pages * PAGE;
    else this.free.push({ addr: end, size: pages * PAGE });
    return true;
  }
}
