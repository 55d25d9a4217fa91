// A GGUF file's index: metadata and tensor table, parsed by @huggingface/gguf from the first bytes
// of the file, read through the range cache in the parser's own chunks. Everything a loader relies
// on is checked here (types, sizes, alignment, extents, overlaps), so a damaged or hostile file is a
// named error before a byte of weights is used.
import { gguf } from '@huggingface/gguf';
import { AigridError } from '../../../protocol/errors.ts';
import { GGML_BLOCK, ggmlTypeName, isSupportedGgmlType, type GgmlType } from '../../../kernels/ggml-quants.ts';
import type { CachedRanges } from '../checkpoint/cached-ranges.ts';

export interface GgufTensor {
  name: string;
  /** ggml type id (kernels/ggml-quants.ts GGML_TYPE). */
  type: GgmlType;
  /** ggml order: the innermost (contiguous) dimension first. */
  dims: number[];
  /** Absolute byte range in the file: [begin, end). */
  begin: number;
  end: number;
}

export interface GgufIndex {
  /** Key -> value as parsed (64-bit integers arrive as bigint). No prototype: keys are the file's. */
  metadata: Record<string, unknown>;
  tensors: Map<string, GgufTensor>;
  alignment: number;
}

/** Tensors a model file may list (an 8B model has under 300; MoE models with split experts a few thousand). */
const MAX_TENSORS = 65_536;

export async function readGgufIndex(ranges: CachedRanges, file: string, signal?: AbortSignal): Promise<GgufIndex> {
  const url = ranges.source.url(file);
  const corrupt = (why: string) => new AigridError('ERR_CHECKPOINT_CORRUPT', `${url}: ${why}`);
  const size = await ranges.source.size(file, { signal });
  // The parser asks for fixed chunks by Range header; each is answered from the cache or the source.
  const rangeFetch = async (_input: unknown, init?: { headers?: Record<string, string> }): Promise<Response> => {
    const match = /^bytes=(\d+)-(\d+)$/.exec(init?.headers?.Range ?? '');
    if (!match) throw new AigridError('ERR_INVALID_ARGUMENT', 'the GGUF parser asked for something other than one byte range');
    const begin = Math.min(Number(match[1]), size);
    const end = Math.min(Number(match[2]) + 1, size);
    const bytes = end > begin ? await ranges.read(file, begin, end, () => {}, { signal }) : new Uint8Array(0);
    return new Response(bytes as Uint8Array<ArrayBuffer>, { status: 206, headers: { 'content-range': `bytes ${begin}-${Math.max(begin, end - 1)}/${size}` } });
  };
  let parsed: Awaited<ReturnType<typeof gguf>>;
  try {
    parsed = await gguf('https://gguf.invalid/model.gguf', { fetch: rangeFetch as typeof fetch });
  } catch (err) {
    if (err instanceof AigridError) throw err;
    throw corrupt(`not a readable GGUF file (${(err as Error).message.slice(0, 200)})`);
  }
  if (!parsed.littleEndian) throw new AigridError('ERR_UNSUPPORTED_MODEL', `${url}: big-endian GGUF files are not read`);
  if (parsed.metadata.version !== 3 && parsed.metadata.version !== 2) {
    throw new AigridError('ERR_UNSUPPORTED_MODEL', `${url}: GGUF version ${parsed.metadata.version}; versions 2 and 3 are read`);
  }
  const metadata: Record<string, unknown> = Object.create(null);
  for (const [key, value] of Object.entries(parsed.metadata)) metadata[key] = value;
  const alignment = Number(metadata['general.alignment'] ?? 32);
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment > 1 << 20 || (alignment & (alignment - 1)) !== 0) {
    throw corrupt(`general.alignment ${String(metadata['general.alignment'])} is not a power of two`);
  }
  if (parsed.tensorInfos.length > MAX_TENSORS) throw corrupt(`${parsed.tensorInfos.length} tensors (at most ${MAX_TENSORS} are read)`);
  const dataStart = Number(parsed.tensorDataOffset);
  const tensors = new Map<string, GgufTensor>();
  for (const info of parsed.tensorInfos) {
    const name = info.name;
    if (tensors.has(name)) throw corrupt(`tensor ${name} is listed twice`);
    if (!isSupportedGgmlType(info.dtype)) {
      throw new AigridError('ERR_DTYPE_UNSUPPORTED', `${url}: tensor ${name} is ${ggmlTypeName(info.dtype)}; read are F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K and Q6_K`);
    }
    const dims = info.shape.map(Number);
    if (dims.length === 0 || dims.some((d) => !Number.isSafeInteger(d) || d <= 0)) throw corrupt(`tensor ${name} has shape [${info.shape.join(', ')}]`);
    const elements = dims.reduce((a, b) => a * b, 1);
    const block = GGML_BLOCK[info.dtype];
    if (!Number.isSafeInteger(elements) || dims[0]! % block.elements !== 0) {
      throw corrupt(`tensor ${name}: rows of ${dims[0]} are not whole ${ggmlTypeName(info.dtype)} blocks of ${block.elements}`);
    }
    const offset = Number(info.offset);
    if (!Number.isSafeInteger(offset) || offset % alignment !== 0) throw corrupt(`tensor ${name}: offset ${info.offset} is not aligned to ${alignment}`);
    const begin = dataStart + offset;
    const end = begin + (elements / block.elements) * block.bytes;
    if (end > size) throw corrupt(`tensor ${name} ends at byte ${end} but the file has ${size} (truncated?)`);
    tensors.set(name, { name, type: info.dtype, dims, begin, end });
  }
  const extents = [...tensors.values()].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < extents.length; i++) {
    if (extents[i]!.begin < extents[i - 1]!.end) throw corrupt(`tensors ${extents[i - 1]!.name} and ${extents[i]!.name} overlap`);
  }
  return { metadata, tensors, alignment };
}
