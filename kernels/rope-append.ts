// Rope of q and k and the KV append of one decoder layer in one dispatch, from the output of a fused
// q/k/v projection ([T, (heads + 2 kvHeads) * headDim]); the CPU reference is rope then append
// (kernels/cpu/rope.ts and the cache's own copy), which this equals bit for bit; with per-head
// q/k norms (Qwen3, Gemma 3) the norm is computed per head here (sums in another order than the
// norm kernel's).
import { AigridError } from '../protocol/index.ts';
import type { RopeScaling } from './cpu/rope.ts';
import type { GpuContext } from './context.ts';
import f16Round from './f16_round.wgsl?raw';
import { elementGrid } from './grid.ts';
import { expectDtype, expectShape } from './guard.ts';
import type { KvCache } from './kv-cache.ts';
import body from './rope-append.wgsl?raw';
import headNorm from './rope_append_norm.wgsl?raw';
import headPlain from './rope_append_plain.wgsl?raw';
import angle from './rope_angle.wgsl?raw';
import { ropeFreqs } from './rope.ts';
import type { GpuTensor } from './tensor.ts';

const WG = 256;
const PLAIN = angle + f16Round + headPlain + body;
const NORMED = angle + f16Round + headNorm + body;

export interface RopeAppendShape {
  heads: number;
  kvHeads: number;
  headDim: number;
}

/** RMSNorm weights ([headDim] each) over every head of q and of k before rope. */
export interface HeadNorms {
  q: GpuTensor;
  k: GpuTensor;
  eps: number;
}

export class RopeAppendOp {
  constructor(private readonly ctx: GpuContext) {}

  /**
   * Rotates q of qkv into qOut [T, heads, headDim] and appends rotated k and v to the cache at its
   * length (which advances by T, so attention recorded next sees them). positions: u32 [T].
   * With norms, each head of q and k is RMS-normed first.
   */
  run(encoder: GPUCommandEncoder, qkv: GpuTensor, positions: GpuTensor, cache: KvCache, qOut: GpuTensor, shape: RopeAppendShape, theta: number, scaling?: RopeScaling, norms?: HeadNorms): void {
    const { heads, kvHeads, headDim } = shape;
    const op = 'rope-append';
    expectDtype(op, 'qkv', qkv, ['f32']);
    expectDtype(op, 'positions', positions, ['u32']);
    expectDtype(op, 'q out', qOut, ['f32']);
    if (headDim % 2 !== 0) throw new AigridError('ERR_SHAPE_MISMATCH', `${op}: headDim must be even, got ${headDim}`);
    if (cache.kvHeads !== kvHeads || cache.headDim !== headDim) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `${op}: the cache holds ${cache.kvHeads} x ${cache.headDim}, not ${kvHeads} x ${headDim}`);
    }
    if (heads === 0 || heads % kvHeads !== 0) throw new AigridError('ERR_SHAPE_MISMATCH', `${op}: ${heads} heads are not a multiple of ${kvHeads} kv heads`);
    expectShape(op, 'qkv', qkv, [null, (heads + 2 * kvHeads) * headDim]);
    const T = qkv.shape[0]!;
    expectShape(op, 'positions', positions, [T]);
    expectShape(op, 'q out', qOut, [T, heads, headDim]);
    if (qOut.buffer === qkv.buffer) throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: q out must not share qkv's buffer`);
    if (!Number.isFinite(theta) || theta <= 0) throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: theta must be finite and > 0, got ${theta}`);
    if (norms) {
      expectDtype(op, 'q norm', norms.q, ['f32']);
      expectDtype(op, 'k norm', norms.k, ['f32']);
      expectShape(op, 'q norm', norms.q, [headDim]);
      expectShape(op, 'k norm', norms.k, [headDim]);
      if (!Number.isFinite(norms.eps) || norms.eps < 0) throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: eps must be finite and >= 0, got ${norms.eps}`);
    }
    cache.checkLive();
    const freqs = ropeFreqs(this.ctx, theta, headDim, scaling);
    const F16 = cache.dtype === 'f16' ? 1 : 0;
    const variant = norms ? 'head-norm' : '';
    const pipeline = this.ctx.pipeline({ op, dtype: cache.dtype, workgroup: WG, variant }, norms ? NORMED : PLAIN, { WG, F16 });
    const start = cache.reserve(T);
    const n = (T * (heads + 2 * kvHeads) * headDim) / 2;
    if (n === 0) return;
    const words = new Uint32Array([n, heads, kvHeads, headDim / 2, cache.maxSeq, start, 0, 0]);
    new Float32Array(words.buffer, 24, 1)[0] = norms?.eps ?? 0;
    const grid = elementGrid(n, WG, this.ctx.limits.maxComputeWorkgroupsPerDimension);
    // The cache's own uniform: its start moves every step, its buffer (and so the bind group) does not.
    const params = this.ctx.ownedUniform(cache, op, encoder, words);
    const buffers = [qkv.buffer, positions.buffer, freqs.buffer, qOut.buffer, cache.k.buffer, cache.v.buffer, params, norms?.q.buffer, norms?.k.buffer];
    this.ctx.dispatch(encoder, pipeline, buffers, grid);
  }
}
