// A GGUF model file read like a checkpoint: the index up front (metadata and tensor table), then
// only the bytes of the tensors asked for. It answers what loading asks of any checkpoint (config,
// tensor infos and values under the runtime's names, tokenizer files), so nothing past it knows
// the format.
import { AigridError } from '../../../protocol/errors.ts';
import { GGML_BLOCK, dequantizeGgml, ggmlRowBytes, ggmlTypeName, isQuantizedGgml, type GgmlBlocks } from '../../../kernels/ggml-quants.ts';
import { CachedRanges } from '../checkpoint/cached-ranges.ts';
import { DEFAULT_MAX_READ_BYTES } from '../checkpoint/plan.ts';
import { readRanges } from '../checkpoint/read-ranges.ts';
import type { FloatTensor, OpenCheckpointOptions, ReadTensorsOptions, TensorInfo } from '../checkpoint/reader.ts';
import type { RangeCache } from '../checkpoint/range-cache.ts';
import type { ByteSource } from '../checkpoint/source.ts';
import { readGgufIndex, type GgufIndex } from './container.ts';
import { configFromGguf, mapTensors, undoTransform, unpermuteRows, type MappedTensor } from './arch.ts';
import { tokenizerFilesFromGguf } from './tokenizer.ts';

export class GgufReader {
  private readonly concurrency: number;
  private readonly maxReadBytes: number;
  private tokenizerFiles?: { json: Record<string, unknown>; config: Record<string, unknown> };

  private constructor(
    readonly source: ByteSource,
    private readonly ranges: CachedRanges,
    /** The file's name within the source. */
    readonly file: string,
    readonly index: GgufIndex,
    /** The config.json the converted model had, as far as the file tells (gguf/arch.ts). */
    readonly config: Record<string, unknown>,
    private readonly mapped: Map<string, MappedTensor>,
    options: OpenCheckpointOptions,
  ) {
    this.concurrency = Math.max(1, options.concurrency ?? 4);
    this.maxReadBytes = options.maxReadBytes ?? DEFAULT_MAX_READ_BYTES;
  }

  static async open(source: ByteSource, file: string, cache: RangeCache | undefined, options: OpenCheckpointOptions = {}): Promise<GgufReader> {
    const ranges = new CachedRanges(source, cache);
    const index = await readGgufIndex(ranges, file, options.signal);
    const config = configFromGguf(index.metadata, index.tensors);
    const mapped = mapTensors(index.metadata, config, index.tensors);
    const reader = new GgufReader(source, ranges, file, index, config, mapped, options);
    // Llama 3's rope scaling travels as a table of per-frequency divisors, small enough to hold in the config.
    if (mapped.has('rope_freqs.weight')) {
      const factors = (await reader.readFloat32(['rope_freqs.weight'], { signal: options.signal })).get('rope_freqs.weight')!.data;
      config.rope_scaling = { rope_type: 'freq_factors', factors: [...factors] };
    }
    return reader;
  }

  readonly generationConfig = undefined;
  readonly hasTokenizerConfig = true;

  get hasTokenizer(): boolean {
    return this.index.metadata['tokenizer.ggml.model'] !== undefined;
  }

  listTensors(): string[] {
    return [...this.mapped.keys()];
  }

  async tensorInfo(names: Iterable<string> = this.mapped.keys()): Promise<TensorInfo[]> {
    return [...new Set(names)].map((name) => {
      const t = this.entry(name);
      return { name, dtype: ggmlTypeName(t.stored.type), shape: t.shape, file: this.file, byteLength: this.range(t).end - this.range(t).begin } as TensorInfo;
    });
  }

  /** tokenizer.json and tokenizer_config.json, made from the file's own tokenizer metadata. */
  async readText(file: string): Promise<string> {
    if (file !== 'tokenizer.json' && file !== 'tokenizer_config.json') {
      throw new AigridError('ERR_INVALID_ARGUMENT', `a GGUF model has no file ${file} beside it; its tokenizer comes from its metadata`);
    }
    this.tokenizerFiles ??= tokenizerFilesFromGguf(this.index.metadata);
    return JSON.stringify(file === 'tokenizer.json' ? this.tokenizerFiles.json : this.tokenizerFiles.config);
  }

  /** The stored bytes of each tensor (an expert: its rows of the stack). */
  async readRaw(names: Iterable<string>, options: ReadTensorsOptions = {}): Promise<Map<string, Uint8Array>> {
    const entries = [...new Set(names)].map((name) => ({ file: this.file, entry: { name, ...this.range(this.entry(name)) } }));
    return readRanges(this.ranges, entries, {
      ...options, concurrency: this.concurrency, maxReadBytes: this.maxReadBytes, maxGap: this.index.alignment,
    });
  }

  /** Whether a tensor is stored in a quantized block format (kept as blocks by the loader). */
  isQuantized(name: string): boolean {
    return isQuantizedGgml(this.entry(name).stored.type);
  }

  quantizedBytes(name: string): number | undefined {
    const t = this.mapped.get(name);
    if (!t || !isQuantizedGgml(t.stored.type)) return undefined;
    const { begin, end } = this.range(t);
    return end - begin;
  }

  /** Quantized matrices as their blocks, rows put back in the runtime's order; refuses float tensors. */
  async readQuantized(names: Iterable<string>, options: ReadTensorsOptions = {}): Promise<Map<string, GgmlBlocks>> {
    const unique = [...new Set(names)];
    for (const name of unique) {
      if (!this.isQuantized(name)) throw new AigridError('ERR_INVALID_ARGUMENT', `tensor ${name} is not quantized; read it with readFloat32`);
    }
    const raw = await this.readRaw(unique, options);
    const out = new Map<string, GgmlBlocks>();
    for (const name of unique) {
      const t = this.entry(name);
      if (t.shape.length !== 2) throw new AigridError('ERR_SHAPE_MISMATCH', `quantized tensor ${name} is not a matrix`);
      const [rows, cols] = t.shape as [number, number];
      const type = t.stored.type;
      const bytes = t.transform?.kind === 'unpermute' ? unpermuteRows(raw.get(name)!, rows, ggmlRowBytes(type, cols), t.transform.heads) : raw.get(name)!;
      out.set(name, { type, rows, cols, bytes });
    }
    return out;
  }

  /** Values as f32, dequantized and with the converter's changes undone. */
  async readFloat32(names: Iterable<string>, options: ReadTensorsOptions = {}): Promise<Map<string, FloatTensor>> {
    const unique = [...new Set(names)];
    const raw = await this.readRaw(unique, options);
    const out = new Map<string, FloatTensor>();
    for (const name of unique) {
      const t = this.entry(name);
      const elements = t.shape.reduce((a, b) => a * b, 1);
      const values = dequantizeGgml(t.stored.type, raw.get(name)!, elements);
      out.set(name, { name, shape: t.shape, data: undoTransform(values, t.shape, t.transform) });
    }
    return out;
  }

  private entry(name: string): MappedTensor {
    const t = this.mapped.get(name);
    if (!t) throw new AigridError('ERR_TENSOR_MISSING', `tensor ${name} is not in ${this.source.url(this.file)}`);
    return t;
  }

  private range(t: MappedTensor): { begin: number; end: number } {
    const block = GGML_BLOCK[t.stored.type];
    const rowBytes = (t.stored.dims[0]! / block.elements) * block.bytes;
    const rows = t.shape.length > 1 ? t.shape[0]! : 1;
    const begin = t.stored.begin + t.rowStart * rowBytes;
    return { begin, end: begin + rows * rowBytes };
  }
}
