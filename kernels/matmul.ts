// Tiled matrix product for prefill: out[m, col0 + n] = x[m, :] · w[n, :] for many rows of x.
// Compute-bound: tiles of x and w are staged in workgroup memory and reused by every thread.
import type { GpuContext } from './context.ts';
import params from './linear-params.wgsl?raw';
import matmulBody from './matmul.wgsl?raw';
import f16Snippet from './matmul_f16.wgsl?raw';
import f16NativeSnippet from './matmul_f16_native.wgsl?raw';
import f32Snippet from './matmul_f32.wgsl?raw';
import q4Snippet from './matmul_q4.wgsl?raw';
import q8Snippet from './matmul_q8.wgsl?raw';
import { AigridError } from '../protocol/index.ts';
import type { LinearKernelOptions } from './matvec.ts';
import type { GpuTensor } from './tensor.ts';
import { checkLinear, linearParams, useNativeF16 } from './weights.ts';

// After the dtype snippet, whose `enable` directive must come first.
const body = params + matmulBody;

const PATHS = {
  f32: f32Snippet + body,
  f16: f16Snippet + body,
  'f16-native': f16NativeSnippet + body,
  q8: q8Snippet + body,
  q4: q4Snippet + body,
} as const;

type PathName = keyof typeof PATHS;

/** Rows and columns of out per thread: the four vec4 accumulators of matmul.wgsl. */
const BLOCK = 4;

/** Threads per workgroup along M and N, and the K step; the tile is BLOCK·wgM x BLOCK·wgN. */
export interface MatmulTile {
  wgM: number;
  wgN: number;
  bk: number;
}

export interface MatmulOptions extends LinearKernelOptions {
  /** A fixed tile instead of the per-shape choice (for tuning); checked against the limits. */
  tile?: MatmulTile;
}

export class MatmulOp {
  readonly nativeF16: boolean;
  private readonly tile?: MatmulTile;

  constructor(private readonly ctx: GpuContext, options: MatmulOptions = {}) {
    this.nativeF16 = useNativeF16(ctx, options.f16 ?? 'auto', 'matmul');
    if (options.tile) {
      checkTile(ctx.limits, options.tile, 4);
      this.tile = options.tile;
    }
  }

  /** out[:, col0 : col0 + N] = x · wᵀ for x [M, K] f32, w [N, K] (f32, f16, q8 or q4), out [M, *] f32. */
  run(encoder: GPUCommandEncoder, x: GpuTensor, w: GpuTensor, out: GpuTensor, col0 = 0): void {
    const dims = checkLinear('matmul', x, w, out, col0);
    if (dims.M === 0 || dims.N === 0) return;
    const name: PathName = w.dtype === 'f16' && this.nativeF16 ? 'f16-native' : (w.dtype as PathName);
    const tile = this.tile ?? chooseTile(this.ctx.limits, dims.M, name === 'f16-native' ? 2 : 4, this.ctx.adapter.isFallbackAdapter);
    const constants: Record<string, number> = { WG_M: tile.wgM, WG_N: tile.wgN, BK: tile.bk };
    const pipeline = this.ctx.pipeline(
      { op: 'matmul', dtype: w.dtype, vector: BLOCK, workgroup: tile.wgM * tile.wgN, variant: name },
      PATHS[name],
      constants,
    );
    const buffers = [out.buffer, this.ctx.uniform(linearParams(dims, w)), x.buffer, w.buffer];
    if (name === 'q8' || name === 'q4') buffers.push(w.scales!);
    this.ctx.dispatch(encoder, pipeline, buffers, [Math.ceil(dims.N / (BLOCK * tile.wgN)), Math.ceil(dims.M / (BLOCK * tile.wgM))]);
  }
}

/**
 * 64 x 64 tiles (16 x 16 threads) for long inputs; 16 x 128 when x has few rows, so a short
 * prompt does not leave most of each tile empty. CPU adapters (SwiftShader) gain nothing from big
 * tiles and compile each byte of workgroup memory slowly, so they get a quarter of that. Shrunk to
 * the adapter's workgroup limits.
 */
export function chooseTile(limits: GPUSupportedLimits, M: number, elementBytes: number, cpuAdapter = false): MatmulTile {
  const few = M <= 16;
  let wgM = few ? 4 : cpuAdapter ? 8 : 16;
  let wgN = few ? (cpuAdapter ? 16 : 32) : cpuAdapter ? 8 : 16;
  let bk = cpuAdapter ? 8 : 16;
  const maxThreads = Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  const bytes = () => tileBytes({ wgM, wgN, bk }, elementBytes);
  const shrink = () => {
    if (wgN >= wgM) wgN /= 2;
    else wgM /= 2;
  };
  while (wgM * wgN > maxThreads) shrink();
  while (bk > 4 && bytes() > limits.maxComputeWorkgroupStorageSize) bk /= 2;
  while (bytes() > limits.maxComputeWorkgroupStorageSize && wgM * wgN > 1) shrink();
  return { wgM, wgN, bk };
}

function tileBytes(tile: MatmulTile, elementBytes: number): number {
  return tile.bk * BLOCK * (tile.wgM + tile.wgN) * elementBytes;
}

function checkTile(limits: GPUSupportedLimits, tile: MatmulTile, elementBytes: number): void {
  const { wgM, wgN, bk } = tile;
  if (![wgM, wgN, bk].every((v) => Number.isInteger(v) && v > 0) || bk % BLOCK !== 0) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `matmul: tile ${JSON.stringify(tile)} needs positive integers and bk % ${BLOCK} == 0`);
  }
  const maxThreads = Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX);
  if (wgM * wgN > maxThreads) {
    throw new AigridError('ERR_GPU_LIMIT', `matmul: ${wgM * wgN} threads exceed maxComputeInvocationsPerWorkgroup / maxComputeWorkgroupSizeX (${maxThreads})`);
  }
  const bytes = tileBytes(tile, elementBytes);
  if (bytes > limits.maxComputeWorkgroupStorageSize) {
    throw new AigridError('ERR_GPU_LIMIT', `matmul: tiles of ${bytes} bytes exceed maxComputeWorkgroupStorageSize (${limits.maxComputeWorkgroupStorageSize})`);
  }
}
