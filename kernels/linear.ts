// A linear layer without bias: out = x · Wᵀ, x [M, K] f32, W [N, K], out [M, N] f32. Decode (one
// row) takes the matrix-vector kernel, prefill the tiled matrix product; a weight split into
// parts is one dispatch per part, each writing its own columns of out. Weights in GGML block formats
// (ggml-weights.ts) go to ggml-linear.ts.
import { AigridError } from '../protocol/index.ts';
import type { GpuContext } from './context.ts';
import { GgmlLinearOp } from './ggml-linear.ts';
import { expectDtype, expectShape } from './guard.ts';
import { MatmulOp } from './matmul.ts';
import { MatvecOp, type LinearKernelOptions, type MatvecFusion } from './matvec.ts';
import { isGgmlDtype, type GpuTensor } from './tensor.ts';
import type { GpuWeight } from './weights.ts';

export class LinearOp {
  private readonly matvec: MatvecOp;
  private readonly matmul: MatmulOp;
  private readonly ggml: GgmlLinearOp;

  constructor(ctx: GpuContext, options: LinearKernelOptions = {}) {
    this.matvec = new MatvecOp(ctx, options);
    this.matmul = new MatmulOp(ctx, options);
    this.ggml = new GgmlLinearOp(ctx);
  }

  /** True when f16 weights take the native shader-f16 kernels. */
  get nativeF16(): boolean {
    return this.matvec.nativeF16;
  }

  /** out = x · wᵀ, or with col0 out[:, col0 : col0 + N] of a wider out (weights side by side). */
  run(encoder: GPUCommandEncoder, x: GpuTensor, weight: GpuWeight, out: GpuTensor, col0?: number): void {
    const [N, K] = weight.shape;
    expectDtype('linear', 'x', x, ['f32']);
    expectShape('linear', 'x', x, [null, K]);
    const M = x.shape[0]!;
    expectDtype('linear', 'out', out, ['f32']);
    // Without col0 out is exactly [M, N]; with it, the kernels check the columns fit.
    expectShape('linear', 'out', out, [M, col0 === undefined ? N : null]);
    checkParts(weight);
    // GGML blocks take their own kernels, which pick matvec or matmul the same way.
    const op = isGgmlDtype(weight.dtype) ? this.ggml : M === 1 ? this.matvec : this.matmul;
    for (const part of weight.parts) op.run(encoder, x, part.tensor, out, (col0 ?? 0) + part.rowStart);
  }

  /**
   * Whether `fused` records x · wᵀ with these fusions as one dispatch per weight part: decode (one
   * row of x) on the vector matvec paths and GGML blocks, and for a gated weight only when it is one part (its
   * gate and up rows bound together). When false nothing is recorded: the caller runs the steps.
   */
  canFuse(x: GpuTensor, weight: GpuWeight, fusion: MatvecFusion): boolean {
    if (x.shape[0] !== 1) return false;
    if (fusion.gated && weight.parts.length !== 1) return false;
    // GGML rows are whole blocks of 16 to 256 values: every K they have takes the fused kernel.
    return isGgmlDtype(weight.dtype) ? weight.shape[1] > 0 : weight.parts.every((part) => this.matvec.canFuse(part.tensor));
  }

  /**
   * out = the fused product (see canFuse; throws where it is false), from column col0 of out
   * (weights side by side; a bias is then indexed from col0 too). Gated: out [M, N / 2].
   */
  fused(encoder: GPUCommandEncoder, x: GpuTensor, weight: GpuWeight, out: GpuTensor, fusion: MatvecFusion, col0 = 0): void {
    if (!this.canFuse(x, weight, fusion)) throw new AigridError('ERR_INVALID_ARGUMENT', `linear: no fused path for [${weight.shape.join(', ')}] ${weight.dtype} and ${x.shape[0]} rows`);
    checkParts(weight);
    const op = isGgmlDtype(weight.dtype) ? this.ggml.matvec : this.matvec;
    for (const part of weight.parts) op.run(encoder, x, part.tensor, out, col0 + part.rowStart, fusion);
  }
}

/** The parts are consecutive row ranges covering the weight. */
function checkParts(weight: GpuWeight): void {
  const [N, K] = weight.shape;
  let next = 0;
  for (const part of weight.parts) {
    if (part.rowStart !== next || part.tensor.dtype !== weight.dtype || part.tensor.shape[0] !== part.rows) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `linear: weight parts of [${N}, ${K}] ${weight.dtype} are not consecutive row ranges`);
    }
    next += part.rows;
  }
  if (next !== N) throw new AigridError('ERR_INVALID_ARGUMENT', `linear: weight parts cover ${next} of ${N} rows`);
}
