// Matrix-vector product for decode: out[m, col0 + n] = x[m, :] · w[n, :] for a few rows of x
// (one row per workgroup layer). Memory-bound: one pass over the weight. On GPUs neighbouring
// threads take neighbouring groups of four elements (contiguous loads of x and w), a group of
// threads per output row and a shared-memory tree reduction ('reduce'). CPU adapters (SwiftShader)
// pay dearly for barriers, so there each thread computes whole rows alone ('rows').
import type { AdapterSummary, GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import params from './linear-params.wgsl?raw';
import matvecBody from './matvec.wgsl?raw';
import anySnippet from './matvec_any.wgsl?raw';
import f16Snippet from './matvec_f16.wgsl?raw';
import f16NativeSnippet from './matvec_f16_native.wgsl?raw';
import f32Snippet from './matvec_f32.wgsl?raw';
import q4Snippet from './matvec_q4.wgsl?raw';
import q8Snippet from './matvec_q8.wgsl?raw';
import matvecRowsBody from './matvec_rows.wgsl?raw';
import rowsQ4Loop from './matvec_rows_q4.wgsl?raw';
import rowsVec4Loop from './matvec_rows_vec4.wgsl?raw';
import vec4Loop from './matvec_vec4.wgsl?raw';
import type { GpuTensor } from './tensor.ts';
import { checkLinear, linearParams, useNativeF16, type F16Mode, type LinearDims } from './weights.ts';

/**
 * 'reduce': the dtype snippet, then the row loop, then matvec.wgsl. The vector paths read groups
 * of four elements and need K % 4 == 0 (q4 always has it); `any` reads one element at a time.
 */
// After the dtype snippet, whose `enable` directive must come first.
const body = params + matvecBody;
const rowsBody = params + matvecRowsBody;

const PATHS = {
  f32: f32Snippet + vec4Loop + body,
  f16: f16Snippet + vec4Loop + body,
  'f16-native': f16NativeSnippet + vec4Loop + body,
  q8: q8Snippet + vec4Loop + body,
  q4: q4Snippet + vec4Loop + body,
  any: anySnippet + body,
} as const;

/** 'rows': the dtype snippet, its row loop, then matvec_rows.wgsl (K % 4 == 0; odd K takes `any`). */
const ROW_PATHS = {
  f32: f32Snippet + rowsVec4Loop + rowsBody,
  f16: f16Snippet + rowsVec4Loop + rowsBody,
  'f16-native': f16NativeSnippet + rowsVec4Loop + rowsBody,
  q8: q8Snippet + rowsVec4Loop + rowsBody,
  q4: q4Snippet + rowsQ4Loop + rowsBody,
} as const;

/** Output rows per thread in matvec_rows.wgsl (its four accumulators). */
const ROWS = 4;

/**
 * Threads per workgroup of 'rows': a few SIMD lanes' worth, so that short weights still split
 * into many workgroups for the CPU threads.
 */
const ROWS_WG = 16;

/** Elements per group in matvec_vec4.wgsl (one vec4 of x). */
const GROUP = 4;

type PathName = keyof typeof PATHS;

/** matvec_any.wgsl's DTYPE values. */
const ANY_DTYPE = { f32: 0, f16: 1, q8: 2 } as const;

export interface LinearKernelOptions {
  /** f16 weights: 'auto' (default) uses native f16 where ctx.f16; 'native' requires it. */
  f16?: F16Mode;
}

/** 'reduce': a workgroup-wide reduction per output row (GPUs); 'rows': whole rows per thread (CPUs). */
export type MatvecKernel = 'reduce' | 'rows';

export interface MatvecOptions extends LinearKernelOptions {
  /** Default: 'rows' on CPU adapters, 'reduce' elsewhere. */
  kernel?: MatvecKernel;
}

/** SwiftShader (Chromium's CPU WebGPU) and other fallback adapters run on the CPU. */
export function isCpuAdapter(adapter: AdapterSummary): boolean {
  return adapter.isFallbackAdapter || adapter.architecture === 'swiftshader';
}

export class MatvecOp {
  /** True when f16 weights take the native shader-f16 kernel. */
  readonly nativeF16: boolean;
  readonly kernel: MatvecKernel;
  private readonly workgroup: number;
  private readonly rowsWorkgroup: number;

  constructor(private readonly ctx: GpuContext, options: MatvecOptions = {}) {
    this.nativeF16 = useNativeF16(ctx, options.f16 ?? 'auto', 'matvec');
    this.kernel = options.kernel ?? (isCpuAdapter(ctx.adapter) ? 'rows' : 'reduce');
    const { maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX } = ctx.limits;
    const maxThreads = Math.min(maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX);
    this.workgroup = floorPow2(Math.min(256, maxThreads));
    this.rowsWorkgroup = floorPow2(Math.min(ROWS_WG, maxThreads));
  }

  /** out[:, col0 : col0 + N] = x · wᵀ for x [M, K] f32, w [N, K] (f32, f16, q8 or q4), out [M, *] f32. */
  run(encoder: GPUCommandEncoder, x: GpuTensor, w: GpuTensor, out: GpuTensor, col0 = 0): void {
    const dims = checkLinear('matvec', x, w, out, col0);
    if (dims.M === 0 || dims.N === 0) return;
    const name = this.pathFor(w.dtype, dims.K);
    if (this.kernel === 'rows' && name !== 'any') return this.runRows(encoder, x, w, out, dims, name);
    const vector = name === 'any' ? 1 : GROUP;
    const WG = this.workgroup;
    // About four groups per thread, whole warps per row on long rows.
    const TPR = Math.max(8, Math.min(WG, floorPow2(Math.ceil(dims.K / vector / 4))));
    const constants: Record<string, number> = { WG, TPR };
    // K = 0 reads no weight (and a q4 weight only comes here then): any decoder will do.
    if (name === 'any') constants.DTYPE = ANY_DTYPE[w.dtype as keyof typeof ANY_DTYPE] ?? ANY_DTYPE.f32;
    const pipeline = this.ctx.pipeline({ op: 'matvec', dtype: w.dtype, vector, workgroup: WG, variant: `reduce/${name}` }, PATHS[name], constants);

    const buffers = [out.buffer, this.ctx.uniform(linearParams(dims, w)), x.buffer, w.buffer];
    if (name === 'q8' || name === 'q4' || name === 'any') buffers.push(w.scales ?? w.buffer);
    const [gx, gy] = elementGrid(dims.N, WG / TPR, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    this.ctx.dispatch(encoder, pipeline, buffers, [gx, gy, dims.M]);
  }

  private runRows(encoder: GPUCommandEncoder, x: GpuTensor, w: GpuTensor, out: GpuTensor, dims: LinearDims, name: keyof typeof ROW_PATHS): void {
    const WG = this.rowsWorkgroup;
    const pipeline = this.ctx.pipeline({ op: 'matvec', dtype: w.dtype, vector: GROUP, workgroup: WG, variant: `rows/${name}` }, ROW_PATHS[name], { WG });
    const buffers = [out.buffer, this.ctx.uniform(linearParams(dims, w)), x.buffer, w.buffer];
    if (name === 'q8' || name === 'q4') buffers.push(w.scales!);
    const [gx, gy] = elementGrid(Math.ceil(dims.N / ROWS), WG, this.ctx.limits.maxComputeWorkgroupsPerDimension);
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
