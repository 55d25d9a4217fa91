// Matrix-vector product for decode: out[m, col0 + n] = x[m, :] · w[n, :] for a few rows of x
// (one row per workgroup layer). Memory-bound: one pass over the weight, neighbouring threads on
// neighbouring groups of four elements (contiguous loads of x and w), a group of threads per
// output row and a shared-memory tree reduction.
import type { GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import body from './matvec.wgsl?raw';
import anySnippet from './matvec_any.wgsl?raw';
import f16Snippet from './matvec_f16.wgsl?raw';
import f16NativeSnippet from './matvec_f16_native.wgsl?raw';
import f32Snippet from './matvec_f32.wgsl?raw';
import q4Snippet from './matvec_q4.wgsl?raw';
import q8Snippet from './matvec_q8.wgsl?raw';
import vec4Loop from './matvec_vec4.wgsl?raw';
import type { GpuTensor } from './tensor.ts';
import { checkLinear, linearParams, useNativeF16, type F16Mode } from './weights.ts';

/**
 * The dtype snippet, then the row loop, then matvec.wgsl. The vector paths read groups of four
 * elements and need K % 4 == 0 (q4 always has it); `any` reads one element at a time.
 */
const PATHS = {
  f32: f32Snippet + vec4Loop + body,
  f16: f16Snippet + vec4Loop + body,
  'f16-native': f16NativeSnippet + vec4Loop + body,
  q8: q8Snippet + vec4Loop + body,
  q4: q4Snippet + vec4Loop + body,
  any: anySnippet + body,
} as const;

/** Elements per group in matvec_vec4.wgsl (one vec4 of x). */
const GROUP = 4;

type PathName = keyof typeof PATHS;

/** matvec_any.wgsl's DTYPE values. */
const ANY_DTYPE = { f32: 0, f16: 1, q8: 2 } as const;

export interface LinearKernelOptions {
  /** f16 weights: 'auto' (default) uses native f16 where ctx.f16; 'native' requires it. */
  f16?: F16Mode;
}

export class MatvecOp {
  /** True when f16 weights take the native shader-f16 kernel. */
  readonly nativeF16: boolean;
  private readonly workgroup: number;

  constructor(private readonly ctx: GpuContext, options: LinearKernelOptions = {}) {
    this.nativeF16 = useNativeF16(ctx, options.f16 ?? 'auto', 'matvec');
    const { maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX } = ctx.limits;
    this.workgroup = floorPow2(Math.min(256, maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX));
  }

  /** out[:, col0 : col0 + N] = x · wᵀ for x [M, K] f32, w [N, K] (f32, f16, q8 or q4), out [M, *] f32. */
  run(encoder: GPUCommandEncoder, x: GpuTensor, w: GpuTensor, out: GpuTensor, col0 = 0): void {
    const dims = checkLinear('matvec', x, w, out, col0);
    if (dims.M === 0 || dims.N === 0) return;
    const name = this.pathFor(w.dtype, dims.K);
    const vector = name === 'any' ? 1 : GROUP;
    const WG = this.workgroup;
    // About four groups per thread, whole warps per row on long rows.
    const TPR = Math.max(8, Math.min(WG, floorPow2(Math.ceil(dims.K / vector / 4))));
    const constants: Record<string, number> = { WG, TPR };
    // K = 0 reads no weight (and a q4 weight only comes here then): any decoder will do.
    if (name === 'any') constants.DTYPE = ANY_DTYPE[w.dtype as keyof typeof ANY_DTYPE] ?? ANY_DTYPE.f32;
    const pipeline = this.ctx.pipeline({ op: 'matvec', dtype: w.dtype, vector, workgroup: WG, variant: name }, PATHS[name], constants);

    const buffers = [out.buffer, this.ctx.uniform(linearParams(dims, w)), x.buffer, w.buffer];
    if (name === 'q8' || name === 'q4' || name === 'any') buffers.push(w.scales ?? w.buffer);
    const [gx, gy] = elementGrid(dims.N, WG / TPR, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, pipeline, buffers, [gx, gy, dims.M]);
  }

  private pathFor(dtype: GpuTensor['dtype'], K: number): PathName {
    // Vector bindings need at least one vec4: an empty x takes the scalar path.
    if (K === 0 || K % GROUP !== 0) return 'any';
    return dtype === 'f16' && this.nativeF16 ? 'f16-native' : (dtype as PathName);
  }
}

export function floorPow2(n: number): number {
  return 2 ** Math.floor(Math.log2(Math.max(1, n)));
}
