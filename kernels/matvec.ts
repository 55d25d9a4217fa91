// Matrix-vector product for decode: out[m, col0 + n] = x[m, :] · w[n, :] for a few rows of x
// (one row per workgroup layer). Memory-bound: one pass over the weight. On GPUs neighbouring
// threads take neighbouring groups of four elements (contiguous loads of x and w), a group of
// threads per output row and a shared-memory tree reduction ('reduce'). Where K allows, f16 / q8 /
// q4 weights take the wide loop instead: a lane loads 16 bytes of weight at a time rather than 2 to
// 8 (f32 groups already are 16 bytes); with subgroups, its rows are reduced by subgroupAdd where
// TPR is a multiple of every subgroup size the adapter may pick. CPU adapters (SwiftShader) pay
// dearly for barriers, so there each thread computes whole rows alone ('rows').
// Fusions (MatvecFusion) save a decoder layer its separate passes: an RMSNorm applied as x is read,
// a bias or residual added as out is written, and a [gate; up] weight whose two products meet in
// SwiGLU / GeGLU before out is written. The vector paths (K % 4 == 0) take them.
import { AigridError } from '../protocol/index.ts';
import type { Gated } from './activation.ts';
import activationFns from './activation_fns.wgsl?raw';
import type { AdapterSummary, GpuContext } from './context.ts';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import params from './linear-params.wgsl?raw';
import matvecBody from './matvec.wgsl?raw';
import anySnippet from './matvec_any.wgsl?raw';
import f16Snippet from './matvec_f16.wgsl?raw';
import f16NativeSnippet from './matvec_f16_native.wgsl?raw';
import f32Snippet from './matvec_f32.wgsl?raw';
import normPrologue from './matvec_norm.wgsl?raw';
import plainEpilogue from './matvec_out.wgsl?raw';
import biasEpilogue from './matvec_out_bias.wgsl?raw';
import gatedEpilogue from './matvec_out_gated.wgsl?raw';
import residualEpilogue from './matvec_out_residual.wgsl?raw';
import q4Snippet from './matvec_q4.wgsl?raw';
import q8Snippet from './matvec_q8.wgsl?raw';
import matvecRowsBody from './matvec_rows.wgsl?raw';
import rowsNormPrologue from './matvec_rows_norm.wgsl?raw';
import rowsQ4Loop from './matvec_rows_q4.wgsl?raw';
import rowsVec4Loop from './matvec_rows_vec4.wgsl?raw';
import slotSnippet from './matvec_slot.wgsl?raw';
import vec4Loop from './matvec_vec4.wgsl?raw';
import wideLoop from './matvec_wide.wgsl?raw';
import wideF16Snippet from './matvec_wide_f16.wgsl?raw';
import wideQ4Snippet from './matvec_wide_q4.wgsl?raw';
import wideQ8Snippet from './matvec_wide_q8.wgsl?raw';
import wideScales from './matvec_wide_scales.wgsl?raw';
import wideSubgroupsBody from './matvec_wide_subgroups.wgsl?raw';
import plainPrologue from './matvec_x.wgsl?raw';
import anyPrologue from './matvec_x_any.wgsl?raw';
import type { DType, GpuTensor } from './tensor.ts';
import { checkLinear, linearParams, useNativeF16, type F16Mode, type LinearDims } from './weights.ts';

/**
 * 'reduce': the dtype snippet and its row loop, then the params, the prologue and epilogue, then
 * matvec.wgsl. The vector paths read groups of four elements and need K % 4 == 0 (q4 always has
 * it); `any` reads one element at a time and takes no fusion.
 */
const LOOPS = {
  f32: f32Snippet + vec4Loop,
  f16: f16Snippet + vec4Loop,
  'f16-native': f16NativeSnippet + vec4Loop,
  q8: q8Snippet + vec4Loop,
  q4: q4Snippet + vec4Loop,
  any: anySnippet,
} as const;

/**
 * 'reduce' on wide units (matvec_wide.wgsl): one vec4<u32> of weight per unit of `unit` elements,
 * taken when K % unit == 0. Native f16 shares the packed snippet: unpacking gives the same f32
 * values, and it needs no shader-f16.
 */
const WIDE = {
  f16: { unit: 8, code: wideF16Snippet + wideLoop },
  q8: { unit: 16, code: wideScales + wideQ8Snippet + wideLoop },
  q4: { unit: 32, code: wideScales + wideQ4Snippet + wideLoop },
} as const;
type WideDtype = keyof typeof WIDE;

/** 'rows': the dtype snippet and its row loop, then matvec_rows.wgsl (K % 4 == 0; odd K takes `any`). */
const ROW_LOOPS = {
  f32: f32Snippet + rowsVec4Loop,
  f16: f16Snippet + rowsVec4Loop,
  'f16-native': f16NativeSnippet + rowsVec4Loop,
  q8: q8Snippet + rowsVec4Loop,
  q4: q4Snippet + rowsQ4Loop,
} as const;

const EPILOGUES = { plain: plainEpilogue, bias: biasEpilogue, residual: residualEpilogue, gated: activationFns + gatedEpilogue } as const;
type Epilogue = keyof typeof EPILOGUES;

/** What a matvec does besides the product (see the header). */
export interface MatvecFusion {
  /** RMSNorm of each x row (weight f32 [K]) before the product. */
  norm?: { weight: GpuTensor; eps: number };
  /** Adds bias [ldo] (its columns col0..) or residual (out's shape) to the product. */
  add?: { kind: 'bias' | 'residual'; tensor: GpuTensor };
  /** The weight is [gate; up] (2I rows) and out [M, I] = act(x · gateᵀ) * (x · upᵀ). */
  gated?: Gated;
}

/** Output rows per thread in matvec_rows.wgsl (its four accumulators). */
const ROWS = 4;

/**
 * Threads per workgroup of 'rows': a few SIMD lanes' worth, so that short weights still split
 * into many workgroups for the CPU threads.
 */
const ROWS_WG = 16;

/** Elements per group in matvec_vec4.wgsl (one vec4 of x). */
const GROUP = 4;

type PathName = keyof typeof LOOPS;

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
  /** The wide loop's rows reduced by subgroup operations where the context has them (default true). */
  subgroups?: boolean;
}

/** SwiftShader (Chromium's CPU WebGPU) and other fallback adapters run on the CPU. */
export function isCpuAdapter(adapter: AdapterSummary): boolean {
  return adapter.isFallbackAdapter || adapter.architecture === 'swiftshader';
}

export class MatvecOp {
  /** True when f16 weights take the native shader-f16 kernel (where K takes no wide loop: see WIDE). */
  readonly nativeF16: boolean;
  readonly kernel: MatvecKernel;
  private readonly workgroup: number;
  private readonly rowsWorkgroup: number;
  /** The largest subgroup size the adapter may pick, 0 without subgroup operations. */
  private readonly subgroupMax: number;

  constructor(private readonly ctx: GpuContext, options: MatvecOptions = {}) {
    this.nativeF16 = useNativeF16(ctx, options.f16 ?? 'auto', 'matvec');
    this.kernel = options.kernel ?? (isCpuAdapter(ctx.adapter) ? 'rows' : 'reduce');
    this.subgroupMax = options.subgroups === false ? 0 : (ctx.subgroups?.max ?? 0);
    const { maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX } = ctx.limits;
    const maxThreads = Math.min(maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX);
    this.workgroup = floorPow2(Math.min(256, maxThreads));
    this.rowsWorkgroup = floorPow2(Math.min(ROWS_WG, maxThreads));
  }

  /** Whether this weight takes the fused kernels (the vector paths: K a positive multiple of 4). */
  canFuse(w: GpuTensor): boolean {
    const K = w.shape[1] ?? 0;
    return K > 0 && K % GROUP === 0;
  }

  /**
   * out[:, col0 : col0 + N] = x · wᵀ for x [M, K] f32, w [N, K] (f32, f16, q8 or q4), out [M, *] f32,
   * with the fusions asked (gated: w [2I, K], out [M, I], col0 0).
   */
  run(encoder: GPUCommandEncoder, x: GpuTensor, w: GpuTensor, out: GpuTensor, col0 = 0, fusion: MatvecFusion = {}): void {
    const dims = fusion.gated ? checkGated(x, w, out, col0) : checkLinear('matvec', x, w, out, col0);
    if (fusion.norm || fusion.add || fusion.gated) checkFusion(dims, fusion, out, this.canFuse(w));
    if (dims.M === 0 || dims.N === 0) return;
    const name = this.pathFor(w.dtype, dims.K);
    const wide = this.kernel === 'reduce' && name !== 'any' ? wideDtype(w, dims.K) : undefined;
    const epilogue: Epilogue = fusion.gated ? 'gated' : (fusion.add?.kind ?? 'plain');
    const rows = this.kernel === 'rows' && name !== 'any';
    const prologue = name === 'any' ? anyPrologue : fusion.norm ? (rows ? rowsNormPrologue : normPrologue) : plainPrologue;
    const loop = wide ? WIDE[wide].code : rows ? ROW_LOOPS[name as keyof typeof ROW_LOOPS] : LOOPS[name];
    const WG = rows ? this.rowsWorkgroup : this.workgroup;
    // Elements per load of the row loop: TPR below follows from K / vector.
    const vector = wide ? WIDE[wide].unit : name === 'any' ? 1 : GROUP;
    const constants: Record<string, number> = { WG, GATED: fusion.gated ? 1 : 0 };
    if (fusion.gated) constants.ACT = fusion.gated === 'geglu' ? 1 : 0;
    let grid: [number, number];
    let subgroups = false;
    const maxGroups = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (rows) {
      // Four rows per thread: four outputs, or two gated ones.
      grid = elementGrid(Math.ceil(dims.N / ROWS), WG, maxGroups);
    } else {
      // About four groups (units) per thread, whole warps per row on long rows; a gated pair in one workgroup.
      const TPR = Math.max(8, Math.min(fusion.gated ? WG / 2 : WG, floorPow2(Math.ceil(dims.K / vector / 4))));
      constants.TPR = TPR;
      if (wide) constants.UNIT = vector;
      // Rows of whole subgroups whatever size the adapter picks (smaller rows keep the tree).
      subgroups = wide !== undefined && this.subgroupMax > 0 && TPR % this.subgroupMax === 0;
      // K = 0 reads no weight (and a q4 weight only comes here then): any decoder will do.
      if (name === 'any') constants.DTYPE = ANY_DTYPE[w.dtype as keyof typeof ANY_DTYPE] ?? ANY_DTYPE.f32;
      grid = elementGrid(dims.N, WG / TPR, maxGroups);
    }
    const snippets = loop + params + prologue + EPILOGUES[epilogue];
    // The subgroup body goes first: its `enable` directive must open the module.
    const code = subgroups ? wideSubgroupsBody + snippets + slotSnippet : snippets + (rows ? matvecRowsBody : slotSnippet + matvecBody);
    const variant = `${rows ? 'rows' : 'reduce'}/${wide ? `wide-${wide}` : name}${subgroups ? '/subgroups' : ''}${fusion.norm ? '/norm' : ''}/${epilogue}`;
    const pipeline = this.ctx.pipeline({ op: 'matvec', dtype: w.dtype, vector, workgroup: WG, variant }, code, constants);
    const scales = name === 'q8' || name === 'q4' ? w.scales : name === 'any' ? (w.scales ?? w.buffer) : undefined;
    const uniform = this.ctx.uniform(linearParams(dims, w, fusion.norm?.eps));
    // Group 0 changes with every pass; group 1 (the weight, scales, norm weight, bias) is cached.
    const residual = fusion.add?.kind === 'residual' ? fusion.add.tensor.buffer : undefined;
    const bias = fusion.add?.kind === 'bias' ? fusion.add.tensor.buffer : undefined;
    const buffers = [out.buffer, uniform, x.buffer, undefined, undefined, undefined, residual];
    this.ctx.dispatch(encoder, pipeline, buffers, [grid[0], grid[1], dims.M], [w.buffer, scales, fusion.norm?.weight.buffer, bias]);
  }

  private pathFor(dtype: GpuTensor['dtype'], K: number): PathName {
    // Vector bindings need at least one vec4: an empty x takes the scalar path.
    if (K === 0 || K % GROUP !== 0) return 'any';
    return dtype === 'f16' && this.nativeF16 ? 'f16-native' : (dtype as PathName);
  }
}

/**
 * The wide loop's dtype for this weight, if it can take it: rows of whole units (K % unit == 0) in
 * a buffer that binds as array<vec4<u32>> (a multiple of 16 bytes; a weight part has its own).
 */
function wideDtype(w: GpuTensor, K: number): WideDtype | undefined {
  if (!Object.hasOwn(WIDE, w.dtype)) return undefined;
  const dtype = w.dtype as WideDtype;
  return K % WIDE[dtype].unit === 0 && w.buffer.size % 16 === 0 ? dtype : undefined;
}

export function floorPow2(n: number): number {
  return 2 ** Math.floor(Math.log2(Math.max(1, n)));
}

/** A gated weight [2I, K] into out [M, I] from column 0: the dims of the weight's product. */
export function checkGated(x: GpuTensor, w: GpuTensor, out: GpuTensor, col0: number, dtypes?: readonly DType[]): LinearDims {
  expectShape('matvec (gated)', 'out', out, [null, null]);
  if (col0 !== 0) throw new AigridError('ERR_INVALID_ARGUMENT', `matvec (gated): the weight must be whole (col0 0), got col0 ${col0}`);
  const I = out.shape[1]!;
  if (w.shape[0] !== 2 * I) throw new AigridError('ERR_SHAPE_MISMATCH', `matvec (gated): a [gate; up] weight of ${w.shape[0]} rows does not give out [${out.shape.join(', ')}]`);
  // Checked as if out held both halves; out's own row stride is I.
  const dims = checkLinear('matvec (gated)', x, w, { ...out, shape: [out.shape[0]!, 2 * I] }, 0, dtypes);
  return { ...dims, ldo: I };
}

/** The fusion's tensors fit the product (vectorPath: the kernel has a fused path for this K). */
export function checkFusion(dims: LinearDims, fusion: MatvecFusion, out: GpuTensor, vectorPath: boolean): void {
  if (!vectorPath) throw new AigridError('ERR_INVALID_ARGUMENT', `matvec: fused kernels need K a positive multiple of ${GROUP}, got K = ${dims.K}`);
  if (fusion.gated && fusion.add) throw new AigridError('ERR_INVALID_ARGUMENT', 'matvec: a gated product takes no bias or residual');
  if (fusion.norm) {
    expectDtype('matvec (norm)', 'norm weight', fusion.norm.weight, ['f32']);
    expectShape('matvec (norm)', 'norm weight', fusion.norm.weight, [dims.K]);
    const eps = fusion.norm.eps;
    if (!Number.isFinite(eps) || eps < 0) throw new AigridError('ERR_INVALID_ARGUMENT', `matvec (norm): eps must be finite and >= 0, got ${eps}`);
  }
  if (fusion.add) {
    const { kind, tensor } = fusion.add;
    expectDtype(`matvec (${kind})`, kind, tensor, ['f32']);
    expectShape(`matvec (${kind})`, kind, tensor, kind === 'bias' ? [dims.ldo] : out.shape);
    if (tensor.buffer === out.buffer) throw new AigridError('ERR_INVALID_ARGUMENT', `matvec (${kind}): out must not share a buffer with the ${kind}`);
  }
}
