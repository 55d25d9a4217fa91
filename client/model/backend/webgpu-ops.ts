// One forward pass recorded into one command encoder: every op is a dispatch of a kernels/ wrapper
// on activation buffers from the pass's pool; views share their tensor's buffer. The fused ops
// (layers/fused.ts) take one dispatch where a decode step allows (matvec prologues and epilogues,
// rope with the KV append) and the separate kernels otherwise (prefill, GGML blocks, odd widths).
import { AigridError } from '../../../protocol/index.ts';
import type { GpuContext } from '../../../kernels/context.ts';
import type { GpuTable } from '../../../kernels/embedding.ts';
import { KvCache } from '../../../kernels/kv-cache.ts';
import { elementCount, type DType, type GpuTensor } from '../../../kernels/tensor.ts';
import type { GpuWeight } from '../../../kernels/weights.ts';
import type { RopeScaling } from '../../../kernels/cpu/rope.ts';
import type { MatvecFusion } from '../../../kernels/matvec.ts';
import type { FusedOps, HeadNorms, QkvShape } from '../layers/fused.ts';
import type { PassBuffers } from './pool.ts';
import { rowSize } from './rows.ts';
import type { AttentionOptions, KvStore, Ops, Table, Tensor, Weight } from './types.ts';
import type { GpuKernels } from './webgpu-kernels.ts';

export function gpuTensor(t: Tensor | Table, what = 'tensor'): GpuTensor {
  if (!('buffer' in t)) throw new AigridError('ERR_INVALID_ARGUMENT', `webgpu backend: ${what} does not belong to a WebGPU backend`);
  return t as GpuTensor;
}

/** Row copies count 4 bytes a value: only pass activations (f32, u32) qualify, not f16 tables. */
function activation(t: Tensor, op: string): GpuTensor {
  const gt = gpuTensor(t);
  if (gt.dtype !== 'f32' && gt.dtype !== 'u32') throw new AigridError('ERR_INVALID_ARGUMENT', `${op}: expected an f32 or u32 tensor, got ${gt.dtype}`);
  return gt;
}

export class WebGpuOps implements Ops, FusedOps {
  constructor(
    private readonly ctx: GpuContext,
    private readonly kernels: GpuKernels,
    readonly encoder: GPUCommandEncoder,
    private readonly buffers: PassBuffers,
  ) {}

  /** A new activation tensor from the pass's pool. */
  alloc(shape: readonly number[], label: string, dtype: DType = 'f32'): GpuTensor {
    const byteLength = elementCount(shape) * 4;
    const buffer = this.buffers.take(byteLength, label);
    return { label, shape: [...shape], dtype, buffer, byteLength };
  }

  input(data: Float32Array, shape: readonly number[]): Tensor {
    return this.upload(data, shape, 'f32', 'input');
  }

  indices(data: Uint32Array): Tensor {
    return this.upload(data, [data.length], 'u32', 'indices');
  }

  private upload(data: Float32Array | Uint32Array, shape: readonly number[], dtype: DType, label: string): GpuTensor {
    if (data.length !== elementCount(shape)) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `${label}: ${data.length} values for [${shape.join(', ')}]`);
    }
    const t = this.alloc(shape, label, dtype);
    // Queue writes land before the pass that is submitted after them.
    if (data.byteLength) this.ctx.device.queue.writeBuffer(t.buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return t;
  }

  view(x: Tensor, shape: readonly number[]): Tensor {
    const t = gpuTensor(x);
    if (elementCount(shape) !== elementCount(t.shape)) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `view: [${t.shape.join(', ')}] cannot be viewed as [${shape.join(', ')}]`);
    }
    return { ...t, shape: [...shape] };
  }

  // Kernels bind whole buffers, so a row range becomes its own buffer through a recorded copy.
  rows(x: Tensor, start: number, count: number): Tensor {
    const xt = activation(x, 'rows');
    const rowBytes = rowSize('rows', xt, xt, start, count) * 4;
    const out = this.alloc([count, ...xt.shape.slice(1)], 'rows', xt.dtype);
    if (count) this.ctx.commands(this.encoder).copyBufferToBuffer(xt.buffer, start * rowBytes, out.buffer, 0, count * rowBytes);
    return out;
  }

  setRows(dst: Tensor, src: Tensor, start: number): void {
    const dt = activation(dst, 'setRows');
    const st = activation(src, 'setRows');
    if (st.dtype !== dt.dtype) throw new AigridError('ERR_INVALID_ARGUMENT', `setRows: ${st.dtype} rows into a ${dt.dtype} tensor`);
    const count = st.shape[0]!;
    const rowBytes = rowSize('setRows', dt, st, start, count) * 4;
    if (count) this.ctx.commands(this.encoder).copyBufferToBuffer(st.buffer, 0, dt.buffer, start * rowBytes, count * rowBytes);
  }

  linear(x: Tensor, w: Weight, bias?: Tensor): Tensor {
    const xt = gpuTensor(x);
    const weight = w as GpuWeight;
    const [N] = weight.shape;
    const M = xt.shape[0]!;
    const out = this.alloc([M, N], 'linear');
    // Decode adds the bias as the product is written.
    const fusion: MatvecFusion = { add: bias && { kind: 'bias', tensor: gpuTensor(bias) } };
    if (bias && bias.shape.length === 1 && this.kernels.linear.canFuse(xt, weight, fusion)) {
      this.kernels.linear.fused(this.encoder, xt, weight, out, fusion);
      return out;
    }
    this.kernels.linear.run(this.encoder, xt, weight, out);
    if (!bias) return out;
    const biased = this.add(out, bias);
    this.free(out);
    return biased;
  }

  add(a: Tensor, b: Tensor): Tensor {
    const at = gpuTensor(a);
    const out = this.alloc(at.shape, 'add');
    this.kernels.add.run(this.encoder, at, gpuTensor(b), out);
    return out;
  }

  rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
    const xt = gpuTensor(x);
    const out = this.alloc(xt.shape, 'rmsnorm');
    this.kernels.rmsNorm.run(this.encoder, xt, gpuTensor(weight), out, eps);
    return out;
  }

  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number): Tensor {
    const xt = gpuTensor(x);
    const out = this.alloc(xt.shape, 'layernorm');
    this.kernels.layerNorm.run(this.encoder, xt, gpuTensor(gamma), gpuTensor(beta), out, eps);
    return out;
  }

  rope(x: Tensor, positions: Tensor, theta: number, scaling?: RopeScaling): Tensor {
    const xt = gpuTensor(x);
    this.kernels.rope.run(this.encoder, xt, gpuTensor(positions), xt, theta, scaling);
    return xt;
  }

  attention(q: Tensor, k: Tensor, v: Tensor, kv: KvStore, options: AttentionOptions = {}): Tensor {
    if (!(kv instanceof KvCache)) throw new AigridError('ERR_INVALID_ARGUMENT', 'webgpu backend: the KV store is not a GPU cache');
    const qt = gpuTensor(q);
    kv.append(this.encoder, gpuTensor(k), gpuTensor(v));
    const out = this.alloc(qt.shape, 'attention');
    this.kernels.attention(kv.headDim).run(this.encoder, qt, kv, out, options);
    return out;
  }

  swiglu(gate: Tensor, up: Tensor): Tensor {
    const g = gpuTensor(gate);
    const out = this.alloc(g.shape, 'swiglu');
    this.kernels.swiglu.run(this.encoder, g, gpuTensor(up), out);
    return out;
  }

  route(logits: Tensor, k: number, normalize: boolean): Tensor {
    const lt = gpuTensor(logits);
    const out = this.alloc(lt.shape, 'moe route');
    this.kernels.moe.runRoute(this.encoder, lt, out, k, normalize);
    return out;
  }

  addWeighted(acc: Tensor, y: Tensor, weights: Tensor, e: number): Tensor {
    const at = gpuTensor(acc);
    const out = this.alloc(at.shape, 'moe add');
    this.kernels.moe.runAddWeighted(this.encoder, at, gpuTensor(y), gpuTensor(weights), e, out);
    return out;
  }

  geglu(gate: Tensor, up: Tensor): Tensor {
    const g = gpuTensor(gate);
    const out = this.alloc(g.shape, 'geglu');
    this.kernels.geglu.run(this.encoder, g, gpuTensor(up), out);
    return out;
  }

  gelu(x: Tensor): Tensor {
    const xt = gpuTensor(x);
    const out = this.alloc(xt.shape, 'gelu');
    this.kernels.gelu.run(this.encoder, xt, out);
    return out;
  }

  embedding(ids: Tensor, table: Table): Tensor {
    const idt = gpuTensor(ids);
    // Tables from table() and tableOf() come in row parts; a plain tensor still serves.
    const tt = 'parts' in table ? (table as GpuTable) : gpuTensor(table, 'table');
    const out = this.alloc([idt.shape[0]!, tt.shape[1]!], 'embedding');
    this.kernels.embedding.run(this.encoder, idt, tt, out);
    return out;
  }

  normLinear(x: Tensor, norm: Tensor, eps: number, w: Weight | readonly Weight[], bias?: Tensor): Tensor {
    const xt = gpuTensor(x);
    const weights = (Array.isArray(w) ? w : [w]) as readonly GpuWeight[];
    const M = xt.shape[0]!;
    const N = weights.reduce((n, wi) => n + wi.shape[0], 0);
    const fusion: MatvecFusion = { norm: { weight: gpuTensor(norm), eps } };
    if (bias) fusion.add = { kind: 'bias', tensor: gpuTensor(bias) };
    const out = this.alloc([M, N], 'linear');
    if (weights.every((wi) => this.kernels.linear.canFuse(xt, wi, fusion))) {
      // Side by side: each weight writes its columns (and reads its part of the bias).
      let col0 = 0;
      for (const wi of weights) {
        this.kernels.linear.fused(this.encoder, xt, wi, out, fusion, col0);
        col0 += wi.shape[0];
      }
      return out;
    }
    const h = this.rmsNorm(x, norm, eps);
    let col0 = 0;
    for (const wi of weights) {
      this.kernels.linear.run(this.encoder, gpuTensor(h), wi, out, col0);
      col0 += wi.shape[0];
    }
    this.free(h);
    if (!bias) return out;
    const biased = this.add(out, bias);
    this.free(out);
    return biased;
  }

  linearResidual(x: Tensor, w: Weight, residual: Tensor): Tensor {
    const xt = gpuTensor(x);
    const weight = w as GpuWeight;
    const fusion: MatvecFusion = { add: { kind: 'residual', tensor: gpuTensor(residual) } };
    if (this.kernels.linear.canFuse(xt, weight, fusion)) {
      const out = this.alloc([xt.shape[0]!, weight.shape[0]], 'linear');
      this.kernels.linear.fused(this.encoder, xt, weight, out, fusion);
      return out;
    }
    const y = this.linear(x, w);
    const out = this.add(residual, y);
    this.free(y);
    return out;
  }

  normAdd(x: Tensor, norm: Tensor, eps: number, residual: Tensor): Tensor {
    const xt = gpuTensor(x);
    const out = this.alloc(xt.shape, 'rmsnorm + add');
    this.kernels.rmsNorm.runAdd(this.encoder, xt, gpuTensor(norm), gpuTensor(residual), out, eps);
    return out;
  }

  gatedLinear(x: Tensor, norm: Tensor | undefined, eps: number, w: Weight, kind: 'swiglu' | 'geglu'): Tensor {
    const xt = gpuTensor(x);
    const weight = w as GpuWeight;
    const M = xt.shape[0]!;
    const I = weight.shape[0] / 2;
    if (!Number.isInteger(I)) throw new AigridError('ERR_SHAPE_MISMATCH', `gated linear: a [gate; up] weight has an even number of rows, got ${weight.shape[0]}`);
    const fusion: MatvecFusion = { gated: kind };
    if (norm) fusion.norm = { weight: gpuTensor(norm), eps };
    const out = this.alloc([M, I], kind);
    if (this.kernels.linear.canFuse(xt, weight, fusion)) {
      this.kernels.linear.fused(this.encoder, xt, weight, out, fusion);
      return out;
    }
    const h = norm ? this.rmsNorm(x, norm, eps) : x;
    const gu = this.linear(h, w); // [M, 2I]
    (kind === 'swiglu' ? this.kernels.swiglu : this.kernels.geglu).runSplit(this.encoder, gpuTensor(gu), out);
    this.free(gu, ...(h === x ? [] : [h]));
    return out;
  }

  qkvAttention(qkv: Tensor, positions: Tensor, kv: KvStore | readonly KvStore[], shape: QkvShape, theta: number, scaling: RopeScaling | undefined, options: AttentionOptions, norms?: HeadNorms): Tensor {
    const T = qkv.shape[0]!;
    const one = (x: Tensor, pos: Tensor, store: KvStore) => this.qkvAttentionOne(x, pos, store, shape, theta, scaling, options, norms);
    if (!Array.isArray(kv)) return one(qkv, positions, kv as KvStore);
    const stores = kv as readonly KvStore[];
    if (stores.length !== T) throw new AigridError('ERR_SHAPE_MISMATCH', `attention: ${stores.length} KV stores for ${T} rows`);
    if (T === 1) return one(qkv, positions, stores[0]!);
    // A batch: each session's row through its own cache, written into its row of out.
    const out = this.alloc([T, shape.heads, shape.headDim], 'attention');
    stores.forEach((store, b) => {
      const row = this.rows(qkv, b, 1);
      const pos = this.rows(positions, b, 1);
      const a = one(row, pos, store);
      this.setRows(out, a, b);
      this.free(row, pos, a);
    });
    return out;
  }

  private qkvAttentionOne(qkv: Tensor, positions: Tensor, kv: KvStore, shape: QkvShape, theta: number, scaling: RopeScaling | undefined, options: AttentionOptions, norms?: HeadNorms): Tensor {
    if (!(kv instanceof KvCache)) throw new AigridError('ERR_INVALID_ARGUMENT', 'webgpu backend: the KV store is not a GPU cache');
    const T = qkv.shape[0]!;
    const q = this.alloc([T, shape.heads, shape.headDim], 'rope q');
    const headNorms = norms && { q: gpuTensor(norms.q), k: gpuTensor(norms.k), eps: norms.eps };
    this.kernels.ropeAppend.run(this.encoder, gpuTensor(qkv), gpuTensor(positions), kv, q, shape, theta, scaling, headNorms);
    const out = this.alloc(q.shape, 'attention');
    this.kernels.attention(kv.headDim).run(this.encoder, q, kv, out, options);
    this.free(q);
    return out;
  }

  free(...tensors: Tensor[]): void {
    for (const t of tensors) this.buffers.give(gpuTensor(t).buffer);
  }
}
