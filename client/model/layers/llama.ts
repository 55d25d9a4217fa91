// The LLaMA-family decoder layer (LLaMA, Mistral, SmolLM2, Qwen2 with its q/k/v biases, Qwen3
// with an RMSNorm over each head of q and k before rope, Phi-3 with fused projections, Qwen3-MoE
// and Mixtral whose sparse layers route each token to some of their experts):
//   x + o_proj(attn(rope(q), rope(k), v))  with q, k, v from RMSNorm(x)
//   then + down_proj(silu(gate_proj(h)) * up_proj(h))  with h = RMSNorm of the first sum.
// On a backend that fuses (layers/fused.ts) q, k, v are stacked into one weight and gate, up into
// another, and a decode step runs: norm + qkv, rope + append, attention, o + residual,
// norm + gate/up + SwiGLU, down + residual (Qwen3's per-head q/k norms inside rope + append).
import type { Backend, Ops, Tensor, Weight, WeightDtype } from '../backend/types.ts';
import type { ModelConfig } from '../config.ts';
import { sliceGgmlRows } from '../../../kernels/ggml-quants.ts';
import { take, takeLinear, type ExpectedShapes, type LoadedValue } from '../load-weights.ts';
import { moeTensorNames } from '../arch/names.ts';
import { concat, fusedOps, fusesWeights, plusLinear, stackRows, type FusedOps } from './fused.ts';
import { attend, linearWeight, withUploads, type Uploads, type Layer, type LayerArch, type PassKv } from './layer.ts';

const prefix = (index: number) => `model.layers.${index}.`;

function shapes(c: ModelConfig, index: number): ExpectedShapes {
  const p = prefix(index);
  const H = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const projections: [string, number[]][] = c.fusedProjections
    ? [[`${p}self_attn.qkv_proj.weight`, [qDim + 2 * kvDim, H]], [`${p}mlp.gate_up_proj.weight`, [2 * I, H]]]
    : [
        [`${p}self_attn.q_proj.weight`, [qDim, H]],
        [`${p}self_attn.k_proj.weight`, [kvDim, H]],
        [`${p}self_attn.v_proj.weight`, [kvDim, H]],
        [`${p}mlp.gate_proj.weight`, [I, H]],
        [`${p}mlp.up_proj.weight`, [I, H]],
      ];
  const out: ExpectedShapes = new Map<string, number[]>([
    [`${p}input_layernorm.weight`, [H]],
    ...projections,
    [`${p}self_attn.o_proj.weight`, [H, qDim]],
    [`${p}post_attention_layernorm.weight`, [H]],
    [`${p}mlp.down_proj.weight`, [H, I]],
  ]);
  const moe = c.moe?.sparse[index] ? c.moe : undefined;
  if (moe) {
    // The experts take the dense MLP's place: a router and each expert's three projections.
    for (const name of ['gate_proj', 'up_proj', 'down_proj']) out.delete(`${p}mlp.${name}.weight`);
    const { router, experts } = moeTensorNames(moe, p);
    out.set(router, [moe.experts, H]);
    for (const x of experts) {
      out.set(x.gate, [moe.intermediate, H]);
      out.set(x.up, [moe.intermediate, H]);
      out.set(x.down, [H, moe.intermediate]);
    }
  }
  if (c.qkvBias) {
    out.set(`${p}self_attn.q_proj.bias`, [qDim]);
    out.set(`${p}self_attn.k_proj.bias`, [kvDim]);
    out.set(`${p}self_attn.v_proj.bias`, [kvDim]);
  }
  if (c.qkNorm) {
    out.set(`${p}self_attn.q_norm.weight`, [c.headDim]);
    out.set(`${p}self_attn.k_norm.weight`, [c.headDim]);
  }
  return out;
}

class LlamaLayer implements Layer {
  private readonly c: ModelConfig;
  private readonly inputNorm: Tensor; // [H]
  /**
   * On a fusing backend: [q; k; v] stacked, [heads * hd + 2 * kvHeads * hd, H] (or q, k, v when
   * their GGUF formats differ: their products land side by side), and their biases end to end.
   */
  private readonly qkv?: readonly Weight[];
  private readonly qkvBias?: Tensor;
  /** On a fusing backend: [gate; up] stacked, [2I, H]. */
  private readonly gateUp?: Weight;
  private readonly q?: Weight; // [heads * hd, H]
  private readonly k?: Weight; // [kvHeads * hd, H]
  private readonly v?: Weight; // [kvHeads * hd, H]
  private readonly qBias?: Tensor; // [heads * hd]
  private readonly kBias?: Tensor; // [kvHeads * hd]
  private readonly vBias?: Tensor; // [kvHeads * hd]
  private readonly qNorm?: Tensor; // [hd]
  private readonly kNorm?: Tensor; // [hd]
  private readonly o: Weight; // [H, heads * hd]
  private readonly postNorm: Tensor; // [H]
  private readonly gate?: Weight; // [I, H]
  private readonly up?: Weight; // [I, H]
  private readonly down?: Weight; // [H, I]
  /** A sparse layer's router [E, H] and experts. */
  private readonly router?: Weight;
  private readonly experts: { gate: Weight; up: Weight; down: Weight }[] = [];

  constructor(backend: Backend, c: ModelConfig, index: number, tensors: Map<string, LoadedValue>, dtype: WeightDtype, private readonly uploads: Uploads) {
    this.c = c;
    const p = prefix(index);
    const H = c.hiddenSize;
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const I = c.intermediateSize;
    // Phi-3's fused projections are row blocks: [q; k; v] and [gate; up].
    const fused = (name: string, from: number, rows: number): LoadedValue => {
      const m = takeLinear(tensors, p + name);
      return m instanceof Float32Array ? m.subarray(from * H, (from + rows) * H) : sliceGgmlRows(m, from, rows);
    };
    const rowsOf: Record<string, () => LoadedValue> = c.fusedProjections
      ? {
          'self_attn.q_proj.weight': () => fused('self_attn.qkv_proj.weight', 0, qDim),
          'self_attn.k_proj.weight': () => fused('self_attn.qkv_proj.weight', qDim, kvDim),
          'self_attn.v_proj.weight': () => fused('self_attn.qkv_proj.weight', qDim + kvDim, kvDim),
          'mlp.gate_proj.weight': () => fused('mlp.gate_up_proj.weight', 0, I),
          'mlp.up_proj.weight': () => fused('mlp.gate_up_proj.weight', I, I),
        }
      : {};
    const raw = (name: string) => rowsOf[name]?.() ?? takeLinear(tensors, p + name);
    const w = (name: string, N: number, K: number) => this.uploads.add(linearWeight(backend, raw(name), N, K, dtype, p + name));
    const vec = (name: string, n: number) => this.uploads.add(backend.constant(take(tensors, p + name), [n], p + name));
    // Stacked projections for a fusing backend: Phi-3's own, else the rows of the separate ones
    // (none when their GGUF block formats differ).
    const stack = (fusedName: string, names: string[], N: number) => {
      const whole = c.fusedProjections ? takeLinear(tensors, p + fusedName) : stackRows(names.map(raw), H);
      return whole && this.uploads.add(linearWeight(backend, whole, N, H, dtype, p + fusedName));
    };
    const fuse = fusesWeights(backend);
    this.inputNorm = vec('input_layernorm.weight', H);
    const qkvNames = ['self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight'];
    const stacked = fuse ? stack('self_attn.qkv_proj.weight', qkvNames, qDim + 2 * kvDim) : undefined;
    if (!stacked) {
      this.q = w('self_attn.q_proj.weight', qDim, H);
      this.k = w('self_attn.k_proj.weight', kvDim, H);
      this.v = w('self_attn.v_proj.weight', kvDim, H);
    }
    if (fuse) {
      // Stacked, or (GGUF blocks of different formats) three weights writing side by side.
      this.qkv = stacked ? [stacked] : [this.q!, this.k!, this.v!];
      if (c.qkvBias) this.qkvBias = this.uploads.add(backend.constant(concat(qkvNames.map((n) => take(tensors, p + n.replace('weight', 'bias')))), [qDim + 2 * kvDim], `${p}self_attn.qkv_proj.bias`));
    } else if (c.qkvBias) {
      this.qBias = vec('self_attn.q_proj.bias', qDim);
      this.kBias = vec('self_attn.k_proj.bias', kvDim);
      this.vBias = vec('self_attn.v_proj.bias', kvDim);
    }
    if (c.qkNorm) {
      this.qNorm = vec('self_attn.q_norm.weight', c.headDim);
      this.kNorm = vec('self_attn.k_norm.weight', c.headDim);
    }
    this.o = w('self_attn.o_proj.weight', H, qDim);
    this.postNorm = vec('post_attention_layernorm.weight', H);
    const moe = c.moe?.sparse[index] ? c.moe : undefined;
    if (moe) {
      // Names relative to the layer's prefix, as `w` takes them.
      const { router, experts } = moeTensorNames(moe, '');
      this.router = w(router, moe.experts, H);
      for (const x of experts) this.experts.push({ gate: w(x.gate, moe.intermediate, H), up: w(x.up, moe.intermediate, H), down: w(x.down, H, moe.intermediate) });
    } else {
      this.gateUp = fuse ? stack('mlp.gate_up_proj.weight', ['mlp.gate_proj.weight', 'mlp.up_proj.weight'], 2 * I) : undefined;
      if (!this.gateUp) {
        this.gate = w('mlp.gate_proj.weight', I, H);
        this.up = w('mlp.up_proj.weight', I, H);
      }
      this.down = w('mlp.down_proj.weight', H, I);
    }
  }

  forward(ops: Ops, x: Tensor, positions: Tensor, kv: PassKv): Tensor {
    const { numHeads: heads, numKvHeads: kvHeads, headDim: hd, normEps: eps } = this.c;
    const T = x.shape[0]!;
    const f = fusedOps(ops);
    const a = f && this.qkv ? this.attentionFused(f, x, positions, kv) : this.attention(ops, x, positions, kv); // [T, heads, hd]
    const av = ops.view(a, [T, heads * hd]);
    const r = plusLinear(ops, f, x, av, this.o); // [T, H]
    ops.free(a);
    if (this.router) {
      const h2 = ops.rmsNorm(r, this.postNorm, eps); // [T, H]
      const out = this.routed(ops, h2, r);
      ops.free(h2, r);
      return out;
    }
    let act: Tensor; // [T, I]
    if (f && this.gateUp) act = f.gatedLinear(r, this.postNorm, eps, this.gateUp, 'swiglu');
    else {
      const h2 = ops.rmsNorm(r, this.postNorm, eps); // [T, H]
      act = gated(ops, h2, this.gate!, this.up!);
      ops.free(h2);
    }
    const out = plusLinear(ops, f, r, act, this.down!); // [T, H]
    ops.free(act, r);
    return out;
  }

  /** Norm, q/k/v, rope, append and attention as separate steps. */
  private attention(ops: Ops, x: Tensor, positions: Tensor, kv: PassKv): Tensor {
    const { numHeads: heads, numKvHeads: kvHeads, headDim: hd, normEps: eps, ropeTheta: theta } = this.c;
    const T = x.shape[0]!;
    const h = ops.rmsNorm(x, this.inputNorm, eps); // [T, H]
    const q = ops.linear(h, this.q!, this.qBias); // [T, heads * hd]
    const k = ops.linear(h, this.k!, this.kBias); // [T, kvHeads * hd]
    const v = ops.linear(h, this.v!, this.vBias); // [T, kvHeads * hd]
    ops.free(h);
    const qn = this.qNorm ? ops.rmsNorm(ops.view(q, [T * heads, hd]), this.qNorm, eps) : q;
    const kn = this.kNorm ? ops.rmsNorm(ops.view(k, [T * kvHeads, hd]), this.kNorm, eps) : k;
    const qr = ops.rope(ops.view(qn, [T, heads, hd]), positions, theta, this.c.ropeScaling); // [T, heads, hd]
    const kr = ops.rope(ops.view(kn, [T, kvHeads, hd]), positions, theta, this.c.ropeScaling); // [T, kvHeads, hd]
    const a = attend(ops, qr, kr, ops.view(v, [T, kvHeads, hd]), kv, { window: this.c.slidingWindow }); // [T, heads, hd]
    ops.free(q, qn, qr, k, kn, kr, v);
    return a;
  }

  /** The same on the stacked weight: norm + q/k/v in one product, rope + append in one step. */
  private attentionFused(f: Ops & FusedOps, x: Tensor, positions: Tensor, kv: PassKv): Tensor {
    const { numHeads: heads, numKvHeads: kvHeads, headDim, normEps: eps, ropeTheta: theta } = this.c;
    const qkv = f.normLinear(x, this.inputNorm, eps, this.qkv!, this.qkvBias); // [T, (heads + 2 kvHeads) * hd]
    const norms = this.qNorm && this.kNorm ? { q: this.qNorm, k: this.kNorm, eps } : undefined;
    const a = f.qkvAttention(qkv, positions, kv, { heads, kvHeads, headDim }, theta, this.c.ropeScaling, { window: this.c.slidingWindow }, norms);
    f.free(qkv);
    return a;
  }

  /**
   * r + the routed experts' outputs. Every expert runs on every row and each row adds each
   * expert's output at its routing weight, 0 for the experts it did not choose: the same sum as
   * running only the chosen ones, read from all of the layer's weights.
   */
  private routed(ops: Ops, h: Tensor, r: Tensor): Tensor {
    const moe = this.c.moe!;
    const logits = ops.linear(h, this.router!); // [T, E]
    const weights = ops.route(logits, moe.topK, moe.normalize); // [T, E]
    ops.free(logits);
    let acc = r;
    this.experts.forEach((expert, e) => {
      const y = mlp(ops, h, expert.gate, expert.up, expert.down); // [T, H]
      const next = ops.addWeighted(acc, y, weights, e);
      ops.free(y, ...(acc === r ? [] : [acc]));
      acc = next;
    });
    ops.free(weights);
    return acc;
  }

  dispose(backend: Backend): void {
    this.uploads.dispose(backend);
  }
}

/** silu(gate(h)) * up(h). */
function gated(ops: Ops, h: Tensor, gate: Weight, up: Weight): Tensor {
  const g = ops.linear(h, gate); // [T, I]
  const u = ops.linear(h, up); // [T, I]
  const act = ops.swiglu(g, u); // [T, I]
  ops.free(g, u);
  return act;
}

/** down(silu(gate(h)) * up(h)). */
function mlp(ops: Ops, h: Tensor, gate: Weight, up: Weight, down: Weight): Tensor {
  const act = gated(ops, h, gate, up);
  const out = ops.linear(act, down); // [T, H]
  ops.free(act);
  return out;
}

export const llamaArch: LayerArch = {
  shapes,
  create: (backend, config, index, tensors, dtype) => withUploads(backend, (u) => new LlamaLayer(backend, config, index, tensors, dtype, u)),
};
