// Linear kernels on GGML-quantized weights (ggml-weights.ts), dequantized inside the shaders:
// decode (one row of x) reads each weight byte once (ggml_matvec.wgsl), prefill dequantizes each
// weight tile once into workgroup memory for the tiled product (ggml_matmul.wgsl + matmul.wgsl).
// The matvec takes matvec.ts's fusions (MatvecFusion: RMSNorm ahead, bias / residual / gated
// epilogues) with the same snippets.
import { AigridError } from '../protocol/index.ts';
import activationFns from './activation_fns.wgsl?raw';
import type { GpuContext } from './context.ts';
import matvecCode from './ggml_matvec.wgsl?raw';
import normPrologue from './ggml_norm.wgsl?raw';
import plainPrologue from './ggml_x.wgsl?raw';
import matmulSnippet from './ggml_matmul.wgsl?raw';
import { elementGrid } from './grid.ts';
import params from './linear-params.wgsl?raw';
import { chooseTile } from './matmul.ts';
import matmulBody from './matmul.wgsl?raw';
import { checkFusion, checkGated, floorPow2, isCpuAdapter, type MatvecFusion, type MatvecKernel } from './matvec.ts';
import plainEpilogue from './matvec_out.wgsl?raw';
import biasEpilogue from './matvec_out_bias.wgsl?raw';
import gatedEpilogue from './matvec_out_gated.wgsl?raw';
import residualEpilogue from './matvec_out_residual.wgsl?raw';
import { GGML_PLANES, type GgmlDType, type GpuTensor } from './tensor.ts';
import { GGML_WEIGHT_DTYPES, checkLinear, linearParams } from './weights.ts';

const EPILOGUES = { plain: plainEpilogue, bias: biasEpilogue, residual: residualEpilogue, gated: activationFns + gatedEpilogue } as const;
// After the snippet, as matmul.ts does.
const MATMUL = matmulSnippet + params + matmulBody;

/** The FORMAT override of both shaders. */
const FORMAT: Record<GgmlDType, number> = { q8_0: 0, q4_0: 1, q4_k: 2, q6_k: 3, q5_0: 4 };

/** Elements per unit of ggml_matvec.wgsl (one lane's step; fixed by each format's decoder there). */
const UNIT: Record<GgmlDType, number> = { q8_0: 16, q4_0: 32, q5_0: 32, q4_k: 32, q6_k: 64 };

/** Rows per thread group: independent weight loads per lane, and the same x for all (GPUs merge those loads). */
const GPU_ROWS = 2;
const CPU_ROWS = 4;

/** Threads per workgroup of 'rows': a few SIMD lanes, so short weights still split over CPU threads. */
const CPU_WG = 16;

/** Rows per matmul thread (matmul.wgsl's 4 x 4 accumulators). */
const BLOCK = 4;

export interface GgmlMatvecOptions {
  /** Default: 'rows' (whole rows per thread, no barriers) on CPU adapters, 'reduce' elsewhere. */
  kernel?: MatvecKernel;
}

/** The tiled product of matmul.wgsl with the weight tile dequantized from GGML blocks. */
export class GgmlMatmulOp {
  constructor(private readonly ctx: GpuContext) {}

  run(encoder: GPUCommandEncoder, x: GpuTensor, w: GpuTensor, out: GpuTensor, col0 = 0): void {
    const dims = checkLinear('ggml-matmul', x, w, out, col0, GGML_WEIGHT_DTYPES);
    if (dims.M === 0 || dims.N === 0) return;
    const dtype = w.dtype as GgmlDType;
    const tile = chooseTile(this.ctx.limits, dims.M, 4, isCpuAdapter(this.ctx.adapter));
    const pipeline = this.ctx.pipeline(
      { op: 'ggml-matmul', dtype, vector: BLOCK, workgroup: tile.wgM * tile.wgN },
      MATMUL,
      { WG_M: tile.wgM, WG_N: tile.wgN, BK: tile.bk, FORMAT: FORMAT[dtype] },
    );
    const buffers = [out.buffer, this.ctx.uniform(linearParams(dims, w)), x.buffer, w.buffer, w.scales!];
    this.ctx.dispatch(encoder, pipeline, buffers, [Math.ceil(dims.N / (BLOCK * tile.wgN)), Math.ceil(dims.M / (BLOCK * tile.wgM))]);
  }
}

/** out[:, col0 : col0 + N] = x · wᵀ for a GGML weight part w [N, K], x [M, K] f32 (one x row per workgroup layer). */
export class GgmlMatvecOp {
  readonly kernel: MatvecKernel;
  private readonly workgroup: number;
  private readonly empty: GgmlMatmulOp;

  constructor(private readonly ctx: GpuContext, options: GgmlMatvecOptions = {}) {
    this.empty = new GgmlMatmulOp(ctx);
    this.kernel = options.kernel ?? (isCpuAdapter(ctx.adapter) ? 'rows' : 'reduce');
    const { maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX } = ctx.limits;
    const maxThreads = Math.min(maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX);
    this.workgroup = floorPow2(Math.min(this.kernel === 'rows' ? CPU_WG : 256, maxThreads));
  }

  /** out[:, col0 : col0 + N] = x · wᵀ with the fusions asked (gated: w [2I, K], out [M, I], col0 0). */
  run(encoder: GPUCommandEncoder, x: GpuTensor, w: GpuTensor, out: GpuTensor, col0 = 0, fusion: MatvecFusion = {}): void {
    const fused = Boolean(fusion.norm || fusion.add || fusion.gated);
    const dims = fusion.gated ? checkGated(x, w, out, col0, GGML_WEIGHT_DTYPES) : checkLinear('ggml-matvec', x, w, out, col0, GGML_WEIGHT_DTYPES);
    if (fused) checkFusion(dims, fusion, out, dims.K > 0);
    if (dims.M === 0 || dims.N === 0) return;
    if (dims.K === 0) {
      if (fused) throw new AigridError('ERR_INVALID_ARGUMENT', 'ggml-matvec: no fused path for K = 0');
      return this.empty.run(encoder, x, w, out, col0); // zeros, without vector bindings of nothing
    }
    const dtype = w.dtype as GgmlDType;
    const WG = this.workgroup;
    const units = dims.K / UNIT[dtype];
    // Rows: one thread per group. Reduce: about two units per lane, within the workgroup.
    const TPR = this.kernel === 'rows' ? 1 : Math.max(8, Math.min(WG, floorPow2(Math.ceil(units / 2))));
    const ROWS = this.kernel === 'rows' ? CPU_ROWS : GPU_ROWS;
    const epilogue = fusion.gated ? 'gated' : (fusion.add?.kind ?? 'plain');
    const code = params + (fusion.norm ? normPrologue : plainPrologue) + EPILOGUES[epilogue] + matvecCode;
    const constants: Record<string, number> = { WG, TPR, ROWS, FORMAT: FORMAT[dtype], GATED: fusion.gated ? 1 : 0 };
    if (fusion.gated) constants.ACT = fusion.gated === 'geglu' ? 1 : 0;
    const variant = `${this.kernel}/tpr${TPR}/rows${ROWS}${fusion.norm ? '/norm' : ''}/${epilogue}`;
    const pipeline = this.ctx.pipeline({ op: 'ggml-matvec', dtype, workgroup: WG, variant }, code, constants);
    const uniform = this.ctx.uniform(linearParams(dims, w, fusion.norm?.eps));
    const residual = fusion.add?.kind === 'residual' ? fusion.add.tensor.buffer : undefined;
    const bias = fusion.add?.kind === 'bias' ? fusion.add.tensor.buffer : undefined;
    const [gx, gy] = elementGrid(Math.ceil(dims.N / ROWS), WG / TPR, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    // Group 1 (the weight's planes, norm weight, bias) is cached by the context.
    this.ctx.dispatch(encoder, pipeline, [out.buffer, uniform, x.buffer, undefined, undefined, undefined, residual], [gx, gy, dims.M], [w.buffer, w.scales!, fusion.norm?.weight.buffer, bias]);
  }
}

/** One weight part: the matrix-vector kernel for one row of x (decode), the tiled product otherwise. */
export class GgmlLinearOp {
  readonly matvec: GgmlMatvecOp;
  readonly matmul: GgmlMatmulOp;

  constructor(ctx: GpuContext, options: GgmlMatvecOptions = {}) {
    this.matvec = new GgmlMatvecOp(ctx, options);
    this.matmul = new GgmlMatmulOp(ctx);
  }

  run(encoder: GPUCommandEncoder, x: GpuTensor, w: GpuTensor, out: GpuTensor, col0 = 0): void {
    (x.shape[0] === 1 ? this.matvec : this.matmul).run(encoder, x, w, out, col0);
  }
}

/** Bytes a decode step reads from a GGML weight [N, K] (both planes): the file's bytes. */
export function ggmlWeightBytes(dtype: GgmlDType, N: number, K: number): number {
  const plane = GGML_PLANES[dtype];
  return (N * K * (plane.quants + plane.meta)) / plane.elements;
}
