// A Hugging Face checkpoint read tensor by tensor: config and index files up front, each shard's
// header when a tensor of it is first asked for, and then only the bytes of the tensors asked for.
import { AigridError } from '../../../protocol/errors.ts';
import { CachedRanges } from './cached-ranges.ts';
import { assertFloatDtype, toFloat32, type LoadedTensor } from './convert.ts';
import { HttpSource, type HttpSourceOptions } from './http-source.ts';
import { DEFAULT_MAX_READ_BYTES } from './plan.ts';
import { readRanges, type ReadProgress } from './read-ranges.ts';
import { defaultBrowserCache, type RangeCache } from './range-cache.ts';
import { readHeader } from './header.ts';
import type { SafetensorsHeader, TensorEntry } from './safetensors.ts';
import { resolveModelUrl, type ByteSource, type ModelUrlOptions } from './source.ts';
import { parseIndex, parseJsonObject } from './json-files.ts';
import { canonicalNames } from './renames.ts';
import { isGgufRef, splitGgufRef } from '../../../protocol/ids.ts';
import { GgufReader } from '../gguf/reader.ts';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export interface OpenCheckpointOptions extends ModelUrlOptions, HttpSourceOptions {
  /** Read from this source instead of resolving `ref` to a URL. */
  source?: ByteSource;
  /** Where downloaded ranges are kept; default: the Cache API in pages, none elsewhere; false: none. */
  cache?: RangeCache | false;
  /** Range requests in flight at once (default 4). */
  concurrency?: number;
  /** Adjacent tensors are merged into reads of at most this many bytes (default 64 MiB). */
  maxReadBytes?: number;
  signal?: AbortSignal;
}

export type { ReadProgress };

export interface ReadTensorsOptions {
  onProgress?: (progress: ReadProgress) => void;
  signal?: AbortSignal;
}

export interface TensorInfo {
  name: string;
  /** A safetensors dtype, or a GGUF tensor's ggml type (Q8_0, Q4_K...). */
  dtype: string;
  shape: number[];
  file: string;
  byteLength: number;
}

export interface FloatTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** What loading reads of a model, whatever its format (a safetensors folder, a GGUF file). */
export interface Checkpoint {
  /** config.json, or what a GGUF file's metadata says of it. */
  readonly config: Record<string, unknown>;
  readonly generationConfig: Record<string, unknown> | undefined;
  readonly hasTokenizer: boolean;
  readonly hasTokenizerConfig: boolean;
  listTensors(): string[];
  tensorInfo(names?: Iterable<string>, signal?: AbortSignal): Promise<TensorInfo[]>;
  readText(file: string, signal?: AbortSignal): Promise<string>;
  readFloat32(names: Iterable<string>, options?: ReadTensorsOptions): Promise<Map<string, FloatTensor>>;
}

/** A model folder of safetensors files. */
export async function openCheckpoint(ref: string, options: OpenCheckpointOptions = {}): Promise<CheckpointReader> {
  const source = options.source ?? new HttpSource(resolveModelUrl(ref, options), options);
  const cache = options.cache === false ? undefined : (options.cache ?? defaultBrowserCache());
  return CheckpointReader.open(source, { ...options, cache: cache ?? false });
}

/** Any model reference: a folder of safetensors, or (a reference ending in .gguf) one GGUF file. */
export async function openModel(ref: string, options: OpenCheckpointOptions = {}): Promise<Checkpoint> {
  if (!isGgufRef(ref)) return openCheckpoint(ref, options);
  const { folder, file } = splitGgufRef(ref);
  const source = options.source ?? new HttpSource(resolveModelUrl(folder, options), options);
  const cache = options.cache === false ? undefined : (options.cache ?? defaultBrowserCache());
  return GgufReader.open(source, file, cache, options);
}

export class CheckpointReader implements Checkpoint {
  private readonly ranges: CachedRanges;
  private readonly headers = new Map<string, Promise<SafetensorsHeader>>();
  /** Canonical tensor name -> the name its file stores it under. */
  private readonly storedNames = new Map<string, string>();
  private readonly concurrency: number;
  private readonly maxReadBytes: number;

  private constructor(
    readonly source: ByteSource,
    cache: RangeCache | undefined,
    options: OpenCheckpointOptions,
    /** config.json. */
    readonly config: Record<string, unknown>,
    /** generation_config.json, when the model has one. */
    readonly generationConfig: Record<string, unknown> | undefined,
    readonly hasTokenizer: boolean,
    readonly hasTokenizerConfig: boolean,
    /** The file listing the tensors: model.safetensors or its index. */
    readonly listing: string,
    /** Tensor name (canonical, see renames.ts) -> the weight file holding it (filled from the header for a single file). */
    private readonly weightMap: Map<string, string>,
  ) {
    this.ranges = new CachedRanges(source, cache);
    this.concurrency = Math.max(1, options.concurrency ?? 4);
    this.maxReadBytes = options.maxReadBytes ?? DEFAULT_MAX_READ_BYTES;
  }

  static async open(source: ByteSource, options: OpenCheckpointOptions = {}): Promise<CheckpointReader> {
    const signal = options.signal;
    const cache = options.cache || undefined;
    const exists = (file: string) => source.exists(file, { signal });
    const [configText, hasGeneration, hasTokenizer, hasTokenizerConfig, hasSingle, hasIndex] = await Promise.all([
      source.text('config.json', { signal }),
      exists('generation_config.json'),
      exists('tokenizer.json'),
      exists('tokenizer_config.json'),
      exists(SINGLE_FILE),
      exists(INDEX_FILE),
    ]);
    const config = parseJsonObject(configText, source.url('config.json'));
    const generationConfig = hasGeneration
      ? parseJsonObject(await source.text('generation_config.json', { signal }), source.url('generation_config.json'))
      : undefined;
    // Like transformers, a single model.safetensors wins over an index.
    let weightMap: Map<string, string>;
    if (hasSingle) weightMap = new Map();
    else if (hasIndex) weightMap = parseIndex(await source.text(INDEX_FILE, { signal }), source.url(INDEX_FILE));
    else {
      throw new AigridError('ERR_UNSUPPORTED_MODEL', `neither ${source.url(SINGLE_FILE)} nor ${INDEX_FILE} beside it exists; only safetensors checkpoints are read`);
    }
    const listing = hasSingle ? SINGLE_FILE : INDEX_FILE;
    const reader = new CheckpointReader(source, cache, options, config, generationConfig, hasTokenizer, hasTokenizerConfig, listing, new Map());
    if (hasSingle) {
      for (const name of (await reader.header(SINGLE_FILE, signal)).tensors.keys()) weightMap.set(name, SINGLE_FILE);
    }
    for (const [stored, canonical] of canonicalNames([...weightMap.keys()])) {
      reader.weightMap.set(canonical, weightMap.get(stored)!);
      reader.storedNames.set(canonical, stored);
    }
    return reader;
  }

  /** Every tensor name in the checkpoint, in the order of its header or index. */
  listTensors(): string[] {
    return [...this.weightMap.keys()];
  }

  /** The weight files (shards) of the checkpoint. */
  weightFiles(): string[] {
    return [...new Set(this.weightMap.values())];
  }

  /** The weight file holding a tensor; ERR_TENSOR_MISSING when the checkpoint has no such tensor. */
  fileOf(name: string): string {
    const file = this.weightMap.get(name);
    if (file === undefined) throw new AigridError('ERR_TENSOR_MISSING', `tensor ${name} is not in ${this.source.url(this.listing)}`);
    return file;
  }

  /** Dtype, shape and file of tensors (reads the headers of their shards, no tensor data). */
  async tensorInfo(names: Iterable<string> = this.weightMap.keys(), signal?: AbortSignal): Promise<TensorInfo[]> {
    const entries = await this.entries([...new Set(names)], signal);
    return entries.map(({ file, entry }) => ({
      name: entry.name, dtype: entry.dtype, shape: entry.shape, file, byteLength: entry.end - entry.begin,
    }));
  }

  /** A small file of the model folder as text (e.g. tokenizer.json). */
  readText(file: string, signal?: AbortSignal): Promise<string> {
    return this.source.text(file, { signal });
  }

  /**
   * The raw bytes of the named tensors, downloading only those bytes (or taking them from the cache).
   * Tensors that lie next to each other in a file arrive in one request; their `bytes` are views
   * into that request's buffer.
   */
  async readTensors(names: Iterable<string>, options: ReadTensorsOptions = {}): Promise<Map<string, LoadedTensor>> {
    const entries = await this.entries([...new Set(names)], options.signal);
    const data = await readRanges(this.ranges, entries, { ...options, concurrency: this.concurrency, maxReadBytes: this.maxReadBytes });
    return new Map(entries.map(({ entry }) => [
      entry.name,
      { name: entry.name, dtype: entry.dtype, shape: entry.shape, bytes: data.get(entry.name)! },
    ]));
  }

  /** Like readTensors, as Float32Array; the dtypes are checked before anything is downloaded. */
  async readFloat32(names: Iterable<string>, options: ReadTensorsOptions = {}): Promise<Map<string, FloatTensor>> {
    const unique = [...new Set(names)];
    for (const { name, dtype } of await this.tensorInfo(unique, options.signal)) assertFloatDtype(name, dtype);
    const out = new Map<string, FloatTensor>();
    for (const [name, t] of await this.readTensors(unique, options)) out.set(name, { name, shape: t.shape, data: toFloat32(t) });
    return out;
  }

  /** Header entries of the named tensors; every name is checked before any header is read. */
  private async entries(names: string[], signal?: AbortSignal): Promise<{ file: string; entry: TensorEntry }[]> {
    const files = names.map((name) => this.fileOf(name));
    const headers = new Map<string, SafetensorsHeader>();
    await Promise.all([...new Set(files)].map(async (file) => headers.set(file, await this.header(file, signal))));
    return names.map((name, i) => {
      const file = files[i]!;
      const stored = this.storedNames.get(name) ?? name;
      const entry = headers.get(file)!.tensors.get(stored);
      if (!entry) throw new AigridError('ERR_TENSOR_MISSING', `tensor ${stored} is listed in ${this.listing} but missing from ${this.source.url(file)}`);
      return { file, entry: stored === name ? entry : { ...entry, name } };
    });
  }

  private header(file: string, signal?: AbortSignal): Promise<SafetensorsHeader> {
    let header = this.headers.get(file);
    if (!header) {
      header = readHeader(this.ranges, file, signal);
      this.headers.set(file, header);
      header.catch(() => this.headers.delete(file)); // a failed read (e.g. aborted) may be retried
    }
    return header;
  }
}
