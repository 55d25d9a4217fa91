// The safetensors format: an 8-byte little-endian header length, a JSON header that maps tensor
// names to {dtype, shape, data_offsets: [begin, end)} relative to the data section, then the data.
// parseHeader validates everything a loader relies on, so a corrupt or truncated file is a named
// error before a single byte of weights is used.
import { AigridError } from '../../../protocol/errors.ts';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte range in the file: [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Bytes before the data section: 8 + header length. */
  dataStart: number;
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

/** Largest header accepted (the format's own limit is 100 MB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Reads the header length from the first 8 bytes. */
export function headerLength(prefix: Uint8Array, file = 'safetensors'): number {
  if (prefix.byteLength < 8) throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${file}: shorter than 8 bytes`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n === 0n || n > BigInt(MAX_HEADER_BYTES)) {
    throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${file}: header length ${n} is out of range`);
  }
  return Number(n);
}

/**
 * Parses and validates a header. `bytes` holds at least the first 8 + headerLength bytes;
 * `fileSize`, when known, is checked against the tensors' extents (a truncated download fails here).
 */
export function parseHeader(bytes: Uint8Array, fileSize?: number, file = 'safetensors'): SafetensorsHeader {
  const length = headerLength(bytes, file);
  if (bytes.byteLength < 8 + length) {
    throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${file}: header of ${length} bytes is cut off at ${bytes.byteLength - 8}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + length)));
  } catch (err) {
    throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${file}: header is not JSON (${(err as Error).message.slice(0, 80)})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${file}: header is not a JSON object`);
  }
  const dataStart = 8 + length;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  const extents: [number, number][] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      metadata = validateMetadata(value, file);
      continue;
    }
    const entry = validateEntry(name, value, dataStart, file);
    tensors.set(name, entry);
    extents.push([entry.begin, entry.end]);
  }
  extents.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < extents.length; i++) {
    if (extents[i]![0] < extents[i - 1]![1]) throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${file}: tensors overlap`);
  }
  const end = extents.length ? extents[extents.length - 1]![1] : dataStart;
  if (fileSize !== undefined && end > fileSize) {
    throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${file}: tensors end at byte ${end} but the file has ${fileSize} (truncated?)`);
  }
  return { dataStart, tensors, metadata };
}

function validateMetadata(value: unknown, file: string): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${file}: __metadata__ is not an object`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${file}: __metadata__.${k} is not a string`);
    out[k] = v;
  }
  return out;
}

function validateEntry(name: string, value: unknown, dataStart: number, file: string): TensorEntry {
  const bad = (why: string) => new AigridError('ERR_CHECKPOINT_CORRUPT', `${file}: tensor ${name}: ${why}`);
  if (typeof value !== 'object' || value === null) throw bad('entry is not an object');
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) throw bad(`unknown dtype ${String(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad('bad shape');
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw bad('bad data_offsets');
  }
  const [begin, end] = offsets as [number, number];
  const elements = (shape as number[]).reduce((a, b) => a * b, 1);
  if (end - begin !== elements * DTYPE_BYTES[dtype as SafetensorsDtype]) {
    throw bad(`data_offsets span ${end - begin} bytes, shape [${shape.join(', ')}] ${dtype} needs ${elements * DTYPE_BYTES[dtype as SafetensorsDtype]}`);
  }
  return { name, dtype: dtype as SafetensorsDtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end };
}

export interface TensorToWrite {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Raw little-endian bytes in that dtype. */
  data: Uint8Array;
}

/** Writes a safetensors file (tensors in the given order, header padded to 8 bytes). */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.byteLength !== elements * DTYPE_BYTES[t.dtype]) {
      throw new AigridError('ERR_SHAPE_MISMATCH', `${name}: ${t.data.byteLength} bytes for [${t.shape.join(', ')}] ${t.dtype}`);
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const spaced = new Uint8Array(padded).fill(0x20);
    spaced.set(json);
    json = spaced;
  }
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let at = 8 + json.byteLength;
  for (const t of Object.values(tensors)) {
    out.set(t.data, at);
    at += t.data.byteLength;
  }
  return out;
}
