// The Gemma decoder layer (Gemma 1 norms only the inputs of attention and the MLP; Gemma 2 and 3
// norm their outputs too, as below):
//   r = x + norm_post_attn(o_proj(attn(rope(norm_q(q)), rope(norm_k(k)), v)))   q, k, v from norm_in(x)
//   out = r + norm_post_ffw(down_proj(gelu(gate_proj(h)) * up_proj(h)))           h = norm_pre_ffw(r)
// Every RMSNorm scales by (1 + w): the weights are stored as w and uploaded as 1 + w (in f32, as
// transformers computes it). Local layers attend within a sliding window; on Gemma 3 with
// rope_local_base_freq and no rope scaling, while global layers use rope_theta and rope_scaling.
// Gemma 3 norms q and k per head (norm_q, norm_k); Gemma 2 soft-caps the attention scores instead.
// On a backend that fuses (layers/fused.ts) q, k, v and gate, up are stacked at load; a decode step
// runs norm + qkv, rope (+ q/k norms) + append, attention, o (+ residual, or norm + residual in one
// pass), norm + gate/up + GeGLU, down (+ residual, or norm + residual).
import type { RopeScaling } from '../../../kernels/cpu/rope.ts';
import type { AttentionOptions, Backend, Ops, Tensor, Weight, WeightDtype } from '../backend/types.ts';
import type { ModelConfig } from '../config.ts';
import { take, takeLinear, type ExpectedShapes, type LoadedValue } from '../load-weights.ts';
import { fusedOps, fusesWeights, plusLinear, plusNorm, stackRows, type FusedOps } from './fused.ts';
import { attend, linearWeight, withUploads, type Uploads, type Layer, type LayerArch, type PassKv } from './layer.ts';

const NORMS = ['input_layernorm', 'post_attention_layernorm', 'pre_feedforward_layernorm', 'post_feedforward_layernorm'] as const;
type NormName = (typeof NORMS)[number];
/** Gemma 1 norms the inputs of attention and of the MLP only (post_attention_layernorm before the MLP). */
const normsOf = (c: ModelConfig): readonly NormName[] => (c.gemma!.sandwich ? NORMS : NORMS.slice(0, 2));

function shapes(c: ModelConfig, index: number): ExpectedShapes {
  const p = `model.layers.${index}.`;
  const [H, I] = [c.hiddenSize, c.intermediateSize];
  const [qDim, kvDim] = [c.numHeads * c.headDim, c.numKvHeads * c.headDim];
  const out = new Map<string, number[]>([
    ...normsOf(c).map((n): [string, number[]] => [`${p}${n}.weight`, [H]]),
    [`${p}self_attn.q_proj.weight`, [qDim, H]],
    [`${p}self_attn.k_proj.weight`, [kvDim, H]],
    [`${p}self_attn.v_proj.weight`, [kvDim, H]],
    [`${p}self_attn.o_proj.weight`, [H, qDim]],
    [`${p}mlp.gate_proj.weight`, [I, H]],
    [`${p}mlp.up_proj.weight`, [I, H]],
    [`${p}mlp.down_proj.weight`, [H, I]],
  ]);
  if (c.qkNorm) {
    out.set(`${p}self_attn.q_norm.weight`, [c.headDim]);
    out.set(`${p}self_attn.k_norm.weight`, [c.headDim]);
  }
  return out;
}

/** A Gemma RMSNorm weight as the (1 + w) it multiplies by. */
export function plusOne(w: Float32Array): Float32Array {
  return w.map((v) => 1 + v);
}

class GemmaLayer implements Layer {
  private readonly norm: Partial<Record<NormName, Tensor>>;
  private readonly qNorm?: Tensor;
  private readonly kNorm?: Tensor;
  /** On a fusing backend: [q; k; v] stacked, or q, k, v side by side (GGUF formats that differ). */
  private readonly qkv?: readonly Weight[];
  /** On a fusing backend: [gate; up] stacked (when their formats allow). */
  private readonly gateUp?: Weight;
  private readonly q?: Weight;
  private readonly k?: Weight;
  private readonly v?: Weight;
  private readonly o: Weight;
  private readonly gate?: Weight;
  private readonly up?: Weight;
  private readonly down: Weight;
  private readonly window: number | undefined;

  constructor(backend: Backend, private readonly c: ModelConfig, index: number, tensors: Map<string, LoadedValue>, dtype: WeightDtype, private readonly uploads: Uploads) {
    const p = `model.layers.${index}.`;
    const [H, I, hd] = [c.hiddenSize, c.intermediateSize, c.headDim];
    const [qDim, kvDim] = [c.numHeads * hd, c.numKvHeads * hd];
    const w = (name: string, N: number, K: number) => this.uploads.add(linearWeight(backend, takeLinear(tensors, p + name), N, K, dtype, p + name));
    const norm = (name: string, n: number) => this.uploads.add(backend.constant(plusOne(take(tensors, p + name)), [n], p + name));
    const fuse = fusesWeights(backend);
    const stack = (names: string[], N: number, label: string) => {
      const whole = fuse ? stackRows(names.map((n) => takeLinear(tensors, p + n)), H) : undefined;
      return whole && this.uploads.add(linearWeight(backend, whole, N, H, dtype, p + label));
    };
    this.norm = Object.fromEntries(normsOf(c).map((n) => [n, norm(`${n}.weight`, H)]));
    const stacked = stack(['self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight'], qDim + 2 * kvDim, 'self_attn.qkv_proj.weight');
    if (!stacked) {
      this.q = w('self_attn.q_proj.weight', qDim, H);
      this.k = w('self_attn.k_proj.weight', kvDim, H);
      this.v = w('self_attn.v_proj.weight', kvDim, H);
    }
    if (fuse) this.qkv = stacked ? [stacked] : [this.q!, this.k!, this.v!];
    this.o = w('self_attn.o_proj.weight', H, qDim);
    if (c.qkNorm) {
      this.qNorm = norm('self_attn.q_norm.weight', hd);
      this.kNorm = norm('self_attn.k_norm.weight', hd);
    }
    this.gateUp = stack(['mlp.gate_proj.weight', 'mlp.up_proj.weight'], 2 * I, 'mlp.gate_up_proj.weight');
    if (!this.gateUp) {
      this.gate = w('mlp.gate_proj.weight', I, H);
      this.up = w('mlp.up_proj.weight', I, H);
    }
    this.down = w('mlp.down_proj.weight', H, I);
    this.window = c.gemma!.windows[index];
  }

  forward(ops: Ops, x: Tensor, positions: Tensor, kv: PassKv): Tensor {
    const { numHeads: heads, headDim: hd, normEps: eps } = this.c;
    const sandwich = this.c.gemma!.sandwich;
    const T = x.shape[0]!;
    const f = fusedOps(ops);
    const a = f && this.qkv ? this.attentionFused(f, x, positions, kv) : this.attention(ops, x, positions, kv); // [T, heads, hd]
    const av = ops.view(a, [T, heads * hd]);
    let r: Tensor; // [T, H]
    if (sandwich) {
      const o = ops.linear(av, this.o);
      r = plusNorm(ops, f, x, o, this.norm.post_attention_layernorm!, eps);
      ops.free(o);
    } else r = plusLinear(ops, f, x, av, this.o);
    ops.free(a);
    const preMlp = (sandwich ? this.norm.pre_feedforward_layernorm : this.norm.post_attention_layernorm)!;
    let act: Tensor; // [T, I]
    if (f && this.gateUp) act = f.gatedLinear(r, preMlp, eps, this.gateUp, 'geglu');
    else {
      const h2 = ops.rmsNorm(r, preMlp, eps);
      const gate = ops.linear(h2, this.gate!);
      const up = ops.linear(h2, this.up!);
      ops.free(h2);
      act = ops.geglu(gate, up);
      ops.free(gate, up);
    }
    let out: Tensor;
    if (sandwich) {
      const down = ops.linear(act, this.down);
      out = plusNorm(ops, f, r, down, this.norm.post_feedforward_layernorm!, eps);
      ops.free(down);
    } else out = plusLinear(ops, f, r, act, this.down);
    ops.free(act, r);
    return out;
  }

  /** Local layers: their own rope base and no scaling; global ones: rope_theta and rope_scaling. */
  private rope(): [number, RopeScaling | undefined] {
    return this.window !== undefined ? [this.c.gemma!.localRopeTheta, undefined] : [this.c.ropeTheta, this.c.ropeScaling];
  }

  private attentionOptions(): AttentionOptions {
    const gemma = this.c.gemma!;
    return { scale: gemma.queryScale, window: this.window, softcap: gemma.attnSoftcap };
  }

  /** Norm, q/k/v, q/k norms, rope, append and attention as separate steps. */
  private attention(ops: Ops, x: Tensor, positions: Tensor, kv: PassKv): Tensor {
    const { numHeads: heads, numKvHeads: kvHeads, headDim: hd, normEps: eps } = this.c;
    const T = x.shape[0]!;
    const h = ops.rmsNorm(x, this.norm.input_layernorm!, eps); // [T, H]
    const q = ops.linear(h, this.q!);
    const k = ops.linear(h, this.k!);
    const v = ops.linear(h, this.v!);
    ops.free(h);
    const qn = this.qNorm ? ops.rmsNorm(ops.view(q, [T * heads, hd]), this.qNorm, eps) : q;
    const kn = this.kNorm ? ops.rmsNorm(ops.view(k, [T * kvHeads, hd]), this.kNorm, eps) : k;
    const [theta, scaling] = this.rope();
    const qr = ops.rope(ops.view(qn, [T, heads, hd]), positions, theta, scaling);
    const kr = ops.rope(ops.view(kn, [T, kvHeads, hd]), positions, theta, scaling);
    const a = attend(ops, qr, kr, ops.view(v, [T, kvHeads, hd]), kv, this.attentionOptions());
    ops.free(q, qn, qr, k, kn, kr, v);
    return a;
  }

  /** The same on the stacked weight: norm + q/k/v in one product, q/k norms + rope + append in one step. */
  private attentionFused(f: Ops & FusedOps, x: Tensor, positions: Tensor, kv: PassKv): Tensor {
    const { numHeads: heads, numKvHeads: kvHeads, headDim, normEps: eps } = this.c;
    const qkv = f.normLinear(x, this.norm.input_layernorm!, eps, this.qkv!);
    const [theta, scaling] = this.rope();
    const norms = this.qNorm && this.kNorm ? { q: this.qNorm, k: this.kNorm, eps } : undefined;
    const a = f.qkvAttention(qkv, positions, kv, { heads, kvHeads, headDim }, theta, scaling, this.attentionOptions(), norms);
    f.free(qkv);
    return a;
  }

  dispose(backend: Backend): void {
    this.uploads.dispose(backend);
  }
}

export const gemmaArch: LayerArch = {
  shapes,
  create: (backend, config, index, tensors, dtype) => withUploads(backend, (u) => new GemmaLayer(backend, config, index, tensors, dtype, u)),
};
