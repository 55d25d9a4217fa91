// The client-side ends of the model: token (and for GPT-2, position) embedding before the first
// layer, final norm and LM head after the last. Tied models read the embedding matrix once and use
// the LM head's storage as the lookup table where its format allows.
import { AigridError } from '../../protocol/index.ts';
import type { GpuContext } from '../../kernels/context.ts';
import { checkIds } from '../../kernels/embedding.ts';
import { softcap } from '../../kernels/cpu/attention.ts';
import { resolveBackend, type BackendChoice } from './backend/select.ts';
import type { Backend, Ops, Table, Tensor, Weight, WeightDtype } from './backend/types.ts';
import type { ModelConfig } from './config.ts';
import { linearWeight, withUploads, type Uploads } from './layers/layer.ts';
import { plusOne } from './layers/gemma.ts';
import { checkTensors, ProgressTotal, readValues, take, takeLinear, type ExpectedShapes, type LoadedValue, type LoadProgress, type TensorSource } from './load-weights.ts';
import { checkRows, checkWeightDtype, readConfig, type PassOutput } from './shard.ts';

export interface HeadLoadOptions {
  /** A backend to share (e.g. with a shard), or which kind to make (default 'auto'). */
  backend?: Backend | BackendChoice;
  gpu?: GPU | GpuContext;
  /** How the LM head is stored (default f32); embedding tables are f32 with f32 weights, else f16. */
  weightDtype?: WeightDtype;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
}

/** A head's logits as the end of a pass (Head.logitsOps). */
export interface HeadOutput extends PassOutput {
  /** Completes the values read back (in place). */
  finish(values: Float32Array): Float32Array;
}

export interface LogitsOptions {
  /** Logits of every row [tokens, V] instead of the last token's [V]. */
  all?: boolean;
}

interface HeadWeights {
  tokens: Table; // [V, H]
  positions?: Table; // [maxPositions, H], GPT-2
  norm: Tensor; // [H]
  normBias?: Tensor; // [H], GPT-2
  lmHead: Weight; // [V, H]
}

function headShapes(c: ModelConfig): ExpectedShapes {
  const V = c.vocabSize;
  const H = c.hiddenSize;
  if (c.family === 'gpt2') {
    return new Map([['wte.weight', [V, H]], ['wpe.weight', [c.maxPositions, H]], ['ln_f.weight', [H]], ['ln_f.bias', [H]]]);
  }
  const shapes: ExpectedShapes = new Map([['model.embed_tokens.weight', [V, H]], ['model.norm.weight', [H]]]);
  if (!c.tieWordEmbeddings) shapes.set('lm_head.weight', [V, H]);
  return shapes;
}

function upload(backend: Backend, c: ModelConfig, tensors: Map<string, LoadedValue>, dtype: WeightDtype, uploads: Uploads): HeadWeights {
  const V = c.vocabSize;
  const H = c.hiddenSize;
  const gpt2 = c.family === 'gpt2';
  const tableDtype = dtype === 'f32' ? 'f32' : 'f16';
  const embedName = gpt2 ? 'wte.weight' : 'model.embed_tokens.weight';
  const headName = gpt2 || c.tieWordEmbeddings ? embedName : 'lm_head.weight';
  const lmHead = uploads.add(linearWeight(backend, takeLinear(tensors, headName), V, H, dtype, headName));
  const tied = headName === embedName ? backend.tableOf(lmHead) : null;
  const embed = takeLinear(tensors, embedName);
  const tokens = tied ?? uploads.add(embed instanceof Float32Array ? backend.table(embed, [V, H], tableDtype, embedName) : backend.quantizedTable(embed, tableDtype, embedName));
  const vec = (name: string) => uploads.add(backend.constant(take(tensors, name), [H], name));
  // Gemma's final norm scales by (1 + w).
  if (c.gemma) return { tokens, norm: uploads.add(backend.constant(plusOne(take(tensors, 'model.norm.weight')), [H], 'model.norm.weight')), lmHead };
  if (!gpt2) return { tokens, norm: vec('model.norm.weight'), lmHead };
  return {
    tokens,
    positions: uploads.add(backend.table(take(tensors, 'wpe.weight'), [c.maxPositions, H], 'f32', 'wpe.weight')),
    norm: vec('ln_f.weight'),
    normBias: vec('ln_f.bias'),
    lmHead,
  };
}

export class Head {
  private destroyed = false;

  private constructor(
    readonly config: ModelConfig,
    readonly backend: Backend,
    private readonly ownsBackend: boolean,
    readonly weightDtype: WeightDtype,
    private readonly w: HeadWeights,
    private readonly uploads: Uploads,
  ) {}

  static async load(source: TensorSource, options: HeadLoadOptions = {}): Promise<Head> {
    const config = readConfig(source);
    const dtype = options.weightDtype ?? 'f32';
    checkWeightDtype(dtype);
    const shapes = headShapes(config);
    const sizes = await checkTensors(source, shapes, options.signal);
    const progress = new ProgressTotal([...sizes.values()].reduce((a, b) => a + b, 0), options.onProgress);
    const tensors = await readValues(source, shapes.keys(), { signal: options.signal, onProgress: progress.forRead() });
    const { backend, owned } = await resolveBackend(options.backend, { gpu: options.gpu });
    let uploads: Uploads | undefined;
    try {
      const w = withUploads(backend, (u) => {
        uploads = u;
        return upload(backend, config, tensors, dtype, u);
      });
      await backend.settle();
      return new Head(config, backend, owned, dtype, w, uploads!);
    } catch (err) {
      uploads?.dispose(backend);
      if (owned) backend.destroy();
      throw err;
    }
  }

  /** Hidden states [T, H] of the tokens at the given positions (positions matter for GPT-2). */
  async embed(tokens: Uint32Array, positions: Uint32Array): Promise<Float32Array> {
    this.checkTokens(tokens, positions);
    const out = await this.backend.run((ops) => this.recordEmbed(ops, tokens, positions));
    checkRows('head: embedding output', out, tokens.length, this.config.hiddenSize);
    // Gemma scales the embeddings by sqrt(hidden), an f32 product as transformers computes it.
    const scale = this.config.gemma?.embedScale;
    if (scale !== undefined) for (let i = 0; i < out.length; i++) out[i] = Math.fround(out[i]! * scale);
    return out;
  }

  /** Whether embedOps can record this model's embedding (not Gemma's, scaled on the CPU). */
  get embedsOnDevice(): boolean {
    return this.config.gemma?.embedScale === undefined;
  }

  /**
   * embed() as ops of a pass that goes on through a shard's layers on this backend, so the rows
   * never leave the device; checked now. Null for Gemma, whose scale is applied on the CPU.
   */
  embedOps(tokens: Uint32Array, positions: Uint32Array): ((ops: Ops) => Tensor) | null {
    this.checkTokens(tokens, positions);
    if (!this.embedsOnDevice) return null;
    return (ops) => this.recordEmbed(ops, tokens, positions);
  }

  /** Logits [V] of the last of `tokens` rows of hidden [tokens, H], or of every row [tokens, V]. */
  async logits(hidden: Float32Array, tokens: number, options: LogitsOptions = {}): Promise<Float32Array> {
    this.checkLive();
    const H = this.config.hiddenSize;
    if (!Number.isInteger(tokens) || tokens < 1) throw new AigridError('ERR_INVALID_ARGUMENT', `head: tokens must be a positive integer, got ${tokens}`);
    checkRows('head: hidden', hidden, tokens, H);
    const rows = options.all ? hidden : hidden.subarray((tokens - 1) * H);
    const R = rows.length / H;
    const logits = await this.backend.run((ops) => this.recordLogits(ops, ops.input(rows, [R, H])));
    checkRows('head: logits', logits, R, this.config.vocabSize);
    return this.finishLogits(logits);
  }

  /**
   * logits() as ops that end a pass whose layers leave x [tokens, H] on this backend: the pass
   * reads back `rows` rows of `width` logits, which `finish` completes.
   */
  logitsOps(tokens: number, options: LogitsOptions = {}): HeadOutput {
    this.checkLive();
    if (!Number.isInteger(tokens) || tokens < 1) throw new AigridError('ERR_INVALID_ARGUMENT', `head: tokens must be a positive integer, got ${tokens}`);
    const rows = options.all ? tokens : 1;
    return {
      rows,
      width: this.config.vocabSize,
      record: (ops, x) => {
        const last = rows === tokens ? x : ops.rows(x, tokens - 1, 1);
        if (last !== x) ops.free(x);
        return this.recordLogits(ops, last);
      },
      finish: (values) => this.finishLogits(values),
    };
  }

  private checkTokens(tokens: Uint32Array, positions: Uint32Array): void {
    this.checkLive();
    if (!(tokens instanceof Uint32Array) || tokens.length === 0) throw new AigridError('ERR_INVALID_ARGUMENT', 'head: tokens must be a non-empty Uint32Array');
    if (!(positions instanceof Uint32Array) || positions.length !== tokens.length) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `head: positions must be a Uint32Array with one entry per token (${tokens.length})`);
    }
    checkIds(tokens, this.config.vocabSize);
    const maxPos = this.config.maxPositions;
    const beyond = positions.findIndex((p) => p >= maxPos);
    if (beyond >= 0) throw new AigridError('ERR_INVALID_ARGUMENT', `head: positions[${beyond}] = ${positions[beyond]} is beyond the model's ${maxPos} positions`);
  }

  private recordEmbed(ops: Ops, tokens: Uint32Array, positions: Uint32Array): Tensor {
    const ids = ops.indices(tokens); // [T]
    const x = ops.embedding(ids, this.w.tokens); // [T, H]
    if (!this.w.positions) return x;
    const p = ops.embedding(ops.indices(positions), this.w.positions); // [T, H]
    const sum = ops.add(x, p); // [T, H]
    ops.free(x, p);
    return sum;
  }

  /** Final norm and LM head of x [R, H] -> [R, V]. */
  private recordLogits(ops: Ops, x: Tensor): Tensor {
    const { norm, normBias, lmHead } = this.w;
    const eps = this.config.normEps;
    const n = normBias ? ops.layerNorm(x, norm, normBias, eps) : ops.rmsNorm(x, norm, eps); // [R, H]
    ops.free(x);
    return ops.linear(n, lmHead); // [R, V]
  }

  /** Gemma 2 soft-caps the logits: cap * tanh(logits / cap), in f32 steps as transformers does. */
  private finishLogits(logits: Float32Array): Float32Array {
    const cap = this.config.gemma?.finalSoftcap;
    if (cap !== undefined) for (let i = 0; i < logits.length; i++) logits[i] = softcap(logits[i]!, cap);
    return logits;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.uploads.dispose(this.backend);
    if (this.ownsBackend) this.backend.destroy();
  }

  private checkLive(): void {
    if (this.destroyed) throw new AigridError('ERR_INVALID_ARGUMENT', 'head: used after destroy()');
  }
}
