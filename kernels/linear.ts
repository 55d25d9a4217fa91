// A linear layer without bias: out = x · Wᵀ, x [M, K] f32, W [N, K], out [M, N] f32. Decode (one
// row) takes the matrix-vector kernel, prefill the tiled matrix product; a weight split into
// parts is one dispatch per part, each writing its own columns of out. Weights in GGML block formats
// (ggml-weights.ts) go to ggml-linear.ts.
import { AigridError } from '../protocol/index.ts';
import type { GpuContext } from './context.ts';
import { GgmlLinearOp } from './ggml-linear.ts';
import { expectDtype, expectShape } from './guard.ts';
import { MatmulOp } from './matmul.ts';
import { MatvecOp, type LinearKernelOptions } from './matvec.ts';
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

  run(encoder: GPUCommandEncoder, x: GpuTensor, weight: GpuWeight, out: GpuTensor): void {
    const [N, K] = weight.shape;
    expectDtype('linear', 'x', x, ['f32']);
    expectShape('linear', 'x', x, [null, K]);
    const M = x.shape[0]!;
    expectDtype('linear', 'out', out, ['f32']);
    expectShape('linear', 'out', out, [M, N]);
    let next = 0;
    for (const part of weight.parts) {
      if (part.rowStart !== next || part.tensor.dtype !== weight.dtype || part.tensor.shape[0] !== part.rows) {
        throw new AigridError('ERR_INVALID_ARGUMENT', `linear: weight parts of [${N}, ${K}] ${weight.dtype} are not consecutive row ranges`);
      }
      next += part.rows;
    }
    if (next !== N) throw new AigridError('ERR_INVALID_ARGUMENT', `linear: weight parts cover ${next} of ${N} rows`);
    // GGML blocks take their own kernels, which pick matvec or matmul the same way.
    const op = isGgmlDtype(weight.dtype) ? this.ggml : M === 1 ? this.matvec : this.matmul;
    for (const part of weight.parts) op.run(encoder, x, part.tensor, out, part.rowStart);
  }
}
