// The GPT-2 block: x + c_proj(attn(q, k, v)) with q, k, v from LayerNorm(x), then
// + mlp.c_proj(gelu_tanh(mlp.c_fc(LayerNorm))). Conv1D weights are stored [in, out]: they are
// transposed at load to the [out, in] every linear kernel takes, and the fused c_attn is split
// into q, k and v there too. Learned positions are added by the head's embedding.
import type { Backend, Ops, Tensor, Weight, WeightDtype } from '../backend/types.ts';
import type { ModelConfig } from '../config.ts';
import { take, transpose, type ExpectedShapes, type LoadedValue } from '../load-weights.ts';
import { attend, linearWeight, withUploads, type Layer, type LayerArch, type PassKv, type Uploads } from './layer.ts';

const prefix = (index: number) => `h.${index}.`;

function shapes(c: ModelConfig, index: number): ExpectedShapes {
  const p = prefix(index);
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  return new Map<string, number[]>([
    [`${p}ln_1.weight`, [H]],
    [`${p}ln_1.bias`, [H]],
    [`${p}attn.c_attn.weight`, [H, 3 * H]],
    [`${p}attn.c_attn.bias`, [3 * H]],
    [`${p}attn.c_proj.weight`, [H, H]],
    [`${p}attn.c_proj.bias`, [H]],
    [`${p}ln_2.weight`, [H]],
    [`${p}ln_2.bias`, [H]],
    [`${p}mlp.c_fc.weight`, [H, I]],
    [`${p}mlp.c_fc.bias`, [I]],
    [`${p}mlp.c_proj.weight`, [I, H]],
    [`${p}mlp.c_proj.bias`, [H]],
  ]);
}

class Gpt2Layer implements Layer {
  private readonly c: ModelConfig;
  private readonly ln1: [Tensor, Tensor]; // gamma, beta [H]
  private readonly q: Weight; // [H, H]
  private readonly k: Weight; // [H, H]
  private readonly v: Weight; // [H, H]
  private readonly qBias: Tensor; // [H]
  private readonly kBias: Tensor; // [H]
  private readonly vBias: Tensor; // [H]
  private readonly proj: Weight; // [H, H]
  private readonly projBias: Tensor; // [H]
  private readonly ln2: [Tensor, Tensor]; // gamma, beta [H]
  private readonly fc: Weight; // [I, H]
  private readonly fcBias: Tensor; // [I]
  private readonly fcProj: Weight; // [H, I]
  private readonly fcProjBias: Tensor; // [H]

  constructor(backend: Backend, c: ModelConfig, index: number, tensors: Map<string, LoadedValue>, dtype: WeightDtype, private readonly uploads: Uploads) {
    this.c = c;
    const p = prefix(index);
    const H = c.hiddenSize;
    const I = c.intermediateSize;
    const get = (name: string) => take(tensors, p + name);
    const vec = (data: Float32Array, label: string) => uploads.add(backend.constant(data, [data.length], p + label));
    // Conv1D [in, out] -> linear [out, in].
    const conv = (name: string, K: number, N: number) => uploads.add(linearWeight(backend, transpose(get(name), K, N), N, K, dtype, p + name));

    this.ln1 = [vec(get('ln_1.weight'), 'ln_1.weight'), vec(get('ln_1.bias'), 'ln_1.bias')];
    const qkv = transpose(get('attn.c_attn.weight'), H, 3 * H); // [3H, H]: rows of q, then k, then v
    const qkvBias = get('attn.c_attn.bias'); // [3H]
    const part = (i: number, label: string) => uploads.add(linearWeight(backend, qkv.subarray(i * H * H, (i + 1) * H * H), H, H, dtype, `${p}attn.c_attn.${label}`));
    const bias = (i: number, label: string) => vec(qkvBias.slice(i * H, (i + 1) * H), `attn.c_attn.${label}.bias`);
    this.q = part(0, 'q');
    this.k = part(1, 'k');
    this.v = part(2, 'v');
    this.qBias = bias(0, 'q');
    this.kBias = bias(1, 'k');
    this.vBias = bias(2, 'v');
    this.proj = conv('attn.c_proj.weight', H, H);
    this.projBias = vec(get('attn.c_proj.bias'), 'attn.c_proj.bias');
    this.ln2 = [vec(get('ln_2.weight'), 'ln_2.weight'), vec(get('ln_2.bias'), 'ln_2.bias')];
    this.fc = conv('mlp.c_fc.weight', H, I);
    this.fcBias = vec(get('mlp.c_fc.bias'), 'mlp.c_fc.bias');
    this.fcProj = conv('mlp.c_proj.weight', I, H);
    this.fcProjBias = vec(get('mlp.c_proj.bias'), 'mlp.c_proj.bias');
  }

  forward(ops: Ops, x: Tensor, _positions: Tensor, kv: PassKv): Tensor {
    const { numHeads: heads, headDim: hd, hiddenSize: H, normEps: eps } = this.c;
    const T = x.shape[0]!;
    const h = ops.layerNorm(x, this.ln1[0], this.ln1[1], eps); // [T, H]
    const q = ops.linear(h, this.q, this.qBias); // [T, H]
    const k = ops.linear(h, this.k, this.kBias); // [T, H]
    const v = ops.linear(h, this.v, this.vBias); // [T, H]
    ops.free(h);
    const a = attend(ops, ops.view(q, [T, heads, hd]), ops.view(k, [T, heads, hd]), ops.view(v, [T, heads, hd]), kv); // [T, heads, hd]
    ops.free(q, k, v);
    const o = ops.linear(ops.view(a, [T, H]), this.proj, this.projBias); // [T, H]
    ops.free(a);
    const r = ops.add(x, o); // [T, H]
    ops.free(o);
    const h2 = ops.layerNorm(r, this.ln2[0], this.ln2[1], eps); // [T, H]
    const f = ops.linear(h2, this.fc, this.fcBias); // [T, I]
    ops.free(h2);
    const g = ops.gelu(f); // [T, I]
    ops.free(f);
    const m = ops.linear(g, this.fcProj, this.fcProjBias); // [T, H]
    ops.free(g);
    const out = ops.add(r, m); // [T, H]
    ops.free(r, m);
    return out;
  }

  dispose(backend: Backend): void {
    this.uploads.dispose(backend);
  }
}

export const gpt2Arch: LayerArch = {
  shapes,
  create: (backend, config, index, tensors, dtype) => withUploads(backend, (u) => new Gpt2Layer(backend, config, index, tensors, dtype, u)),
};
