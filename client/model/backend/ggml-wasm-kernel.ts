// What every GGML kernel shares (ggml-wasm-formats.ts writes the five formats with it): the loops
// over weight rows and their blocks, the widening of quant bytes to f32, the per-group partial sums
// and the final lane sum, in the order kernels/cpu/ggml-linear.ts defines.
//
// Kernel `k_{format}_{MB}(x, xs, w, out, N, blocks, rows)`, byte addresses in the shared memory:
// for r in [0, rows), i in [0, MB): out[i * N + r] = x_i · w_r. x holds MB rows interleaved by
// groups of four values (as cpu-linear.ts does, so one pointer and constant offsets reach every
// row), xs their Q4_K group sums ([group][row] f32x4), w `rows` consecutive repacked weight rows
// (ggml-layout.ts) of `blocks` blocks each.
import { FunctionBody, OP, SIMD } from './ggml-wasm-asm.ts';
import type { GgmlLayout } from './ggml-layout.ts';

export const KERNEL_PARAMS = 7;

/**
 * Vector steps between barriers (see `barrier`): measured on [2048, 2048], every 4 steps is best
 * for one row of x; with more rows the loads of fewer steps fill the registers.
 */
const barrierSteps = (MB: number) => (MB === 1 ? 4 : 2);

/** Writes the body of one kernel: MB rows of x against `rows` weight rows. */
export class KernelWriter {
  readonly f = new FunctionBody(KERNEL_PARAMS);
  private readonly x = 0; private readonly xs = 1; private readonly w = 2; private readonly out = 3;
  private readonly N = 4; private readonly blocks = 5; private readonly rows = 6;
  /** Where the current block's weights, x values and Q4_K group sums start. */
  readonly wk = this.f.i32(); readonly xk = this.f.i32(); readonly xsk = this.f.i32();
  private readonly rowEnd = this.f.i32(); private readonly outP = this.f.i32(); private readonly r = this.f.i32();
  /** Per row of x: the four-lane accumulator, and the current group's partial. */
  readonly acc: number[];
  readonly partial: number[];
  /** The current group's scale, four copies (accumulate reads it). */
  readonly scale = this.f.v128();
  private readonly q = this.f.v128();
  private steps = 0;

  constructor(readonly MB: number) {
    this.acc = Array.from({ length: MB }, () => this.f.v128());
    this.partial = Array.from({ length: MB }, () => this.f.v128());
  }

  /**
   * Pushes bytes 4c..4c+3 of the vector in `src` as four f32 integers: a signed byte is swizzled to
   * the top byte of its lane (the value times 2^24), an unsigned one to the bottom byte, the rest of
   * the lane zero: one shuffle per four weights before the convert, where the extend chain
   * (i8 -> i16 -> i32) takes one and a half.
   */
  widen(src: number, c: number, signed: boolean): void {
    const lanes: number[] = [];
    for (let l = 0; l < 4; l++) lanes.push(...(signed ? [0x80, 0x80, 0x80, 4 * c + l] : [4 * c + l, 0x80, 0x80, 0x80]));
    this.f.get(src).v128Const(lanes).simd(SIMD.swizzle).simd(SIMD.f32x4ConvertI32x4S);
  }

  /**
   * The partials of one group: `vectors` widened weight vectors (pushed by `weights(v)`) times x
   * elements [first + 4v, first + 4v + 4) of every row, added in order of v.
   */
  groupPartials(first: number, vectors: number, weights: (v: number) => void): void {
    const { f, MB } = this;
    for (let v = 0; v < vectors; v++) {
      weights(v);
      f.set(this.q);
      for (let i = 0; i < MB; i++) {
        if (v > 0) f.get(this.partial[i]!);
        f.get(this.q).get(this.xk).load(((first / 4 + v) * MB + i) * 16).simd(SIMD.f32x4Mul);
        if (v > 0) f.simd(SIMD.f32x4Add);
        f.set(this.partial[i]!);
      }
      if (++this.steps % barrierSteps(MB) === 0) for (const p of this.partial) this.barrier(p);
    }
  }

  /**
   * Stores lane 0 of `local` to the current output (rewritten when the row ends). Stores keep the
   * memory accesses on either side in order, and that keeps the compiler from hoisting every load
   * of a block to its top and spilling them: without barriers the kernels ran up to 2.5x slower.
   */
  private barrier(local: number): void {
    this.f.get(this.outP).get(local).simd(SIMD.f32x4ExtractLane, 0).op(OP.f32Store, 2, 0);
  }

  /** acc_i += partial_i * scale. */
  accumulate(): void {
    for (let i = 0; i < this.MB; i++) {
      this.f.get(this.acc[i]!).get(this.partial[i]!).get(this.scale).simd(SIMD.f32x4Mul).simd(SIMD.f32x4Add).set(this.acc[i]!);
    }
  }

  /** Pushes four copies of f32 lane `lane` of `local`. */
  splatLane(local: number, lane: number): void {
    const bytes = [0, 1, 2, 3].map((b) => 4 * lane + b);
    this.f.get(local).get(local).shuffle([...bytes, ...bytes, ...bytes, ...bytes]);
  }

  /** The kernel: the loops over rows and their blocks around `block`, which reads one block at wk. */
  finish(layout: GgmlLayout, xsBytesPerBlock: number, block: () => void): FunctionBody {
    const { f, MB } = this;
    f.get(this.out).set(this.outP);
    f.get(this.w).set(this.wk);
    f.i32Const(0).set(this.r);
    f.op(OP.loop, 0x40);
    {
      for (const a of this.acc) f.f32x4Const(0).set(a);
      f.get(this.x).set(this.xk);
      f.get(this.xs).set(this.xsk);
      f.get(this.blocks).i32Const(layout.blockBytes).op(OP.i32Mul).get(this.wk).op(OP.i32Add).set(this.rowEnd);
      f.op(OP.loop, 0x40);
      block();
      f.addTo(this.xk, layout.blockElements * 4 * MB);
      if (xsBytesPerBlock) f.addTo(this.xsk, xsBytesPerBlock * MB);
      f.get(this.wk).i32Const(layout.blockBytes).op(OP.i32Add).tee(this.wk).get(this.rowEnd).op(OP.i32Ne, OP.brIf, 0);
      f.op(OP.end);
      // out = (lane 0 + lane 1) + (lane 2 + lane 3)
      for (let i = 0; i < MB; i++) {
        const a = this.acc[i]!;
        f.get(this.outP);
        if (i > 0) f.get(this.N).i32Const(4 * i).op(OP.i32Mul, OP.i32Add);
        f.get(a).simd(SIMD.f32x4ExtractLane, 0).get(a).simd(SIMD.f32x4ExtractLane, 1).op(OP.f32Add);
        f.get(a).simd(SIMD.f32x4ExtractLane, 2).get(a).simd(SIMD.f32x4ExtractLane, 3).op(OP.f32Add, OP.f32Add);
        f.op(OP.f32Store, 2, 0);
      }
      f.addTo(this.outP, 4);
      f.get(this.r).i32Const(1).op(OP.i32Add).tee(this.r).get(this.rows).op(OP.i32Ne, OP.brIf, 0);
    }
    f.op(OP.end);
    return f;
  }
}
