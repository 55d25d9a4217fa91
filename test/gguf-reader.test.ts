// The GGUF reader on hostile and damaged files (each a named error before any weight is used), over
// HTTP Range (the index, then only the tensors asked for), with its tokenizer from the metadata,
// and the references that name a GGUF file.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openModel } from '../client/model/checkpoint/reader.ts';
import { openModelNode } from '../client/model/checkpoint/node.ts';
import { Tokenizer } from '../client/model/tokenizer.ts';
import { AigridError, type ErrorCode } from '../protocol/index.ts';
import { splitGgufRef } from '../protocol/ids.ts';
import { byteLevelTokenizer, ggufTokenizerMetadata, sentencePieceTokenizer } from './fixtures/bpe-tokenizers.ts';
import { encodeGguf, GGML_TYPE, tokenizerKvs, type GgufKv, type GgufTensorToWrite } from './fixtures/gguf-writer.ts';
import { GGUF_MODELS, ggufFixture } from './helpers/gguf-fixtures.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';

let root: string;
let server: RangeServer;

async function failure(promise: Promise<unknown>, code: ErrorCode, ...texts: string[]): Promise<void> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err, `expected ${code}`).toBeInstanceOf(AigridError);
  expect((err as AigridError).code, (err as Error).message).toBe(code);
  for (const text of texts) expect((err as AigridError).message).toContain(text);
}

const u32 = (key: string, value: number): GgufKv => ({ key, type: 'u32', value });
/** A minimal llama file: one layer's worth of metadata and an embedding, plus what a case adds. */
function tinyFile(extra: { metadata?: GgufKv[]; tensors?: GgufTensorToWrite[]; arch?: string } = {}): Uint8Array {
  const arch = extra.arch ?? 'llama';
  const metadata: GgufKv[] = [
    { key: 'general.architecture', type: 'string', value: arch },
    u32(`${arch}.embedding_length`, 32), u32(`${arch}.block_count`, 1), u32(`${arch}.attention.head_count`, 2),
    u32(`${arch}.feed_forward_length`, 64),
    ...(extra.metadata ?? []),
  ];
  const embedding: GgufTensorToWrite = { name: 'token_embd.weight', shape: [32, 8], type: GGML_TYPE.F32, data: new Uint8Array(32 * 8 * 4) };
  return encodeGguf({ metadata, tensors: [embedding, ...(extra.tensors ?? [])] });
}

async function file(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(root, name);
  await writeFile(path, bytes);
  return path;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'aigrid-gguf-'));
  server = await startRangeServer(root);
});
afterAll(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

describe('damaged and hostile files', () => {
  it('a file that is not GGUF, or cut inside its index, is ERR_CHECKPOINT_CORRUPT', async () => {
    await failure(openModelNode(await file('text.gguf', new TextEncoder().encode('not a gguf file at all'))), 'ERR_CHECKPOINT_CORRUPT', 'not a readable GGUF');
    const whole = tinyFile();
    await failure(openModelNode(await file('cut.gguf', whole.subarray(0, 60))), 'ERR_CHECKPOINT_CORRUPT');
  });

  it('tensor data cut off by a truncated download is named, with the sizes', async () => {
    const whole = tinyFile();
    await failure(openModelNode(await file('short.gguf', whole.subarray(0, whole.byteLength - 4))), 'ERR_CHECKPOINT_CORRUPT', 'token_embd.weight', 'truncated');
  });

  it('an architecture the runtime lacks is ERR_UNSUPPORTED_MODEL naming it; so is a prototype key', async () => {
    await failure(openModelNode(await file('mamba.gguf', tinyFile({ arch: 'mamba' }))), 'ERR_UNSUPPORTED_MODEL', '"mamba"');
    await failure(openModelNode(await file('proto.gguf', tinyFile({ arch: '__proto__' }))), 'ERR_UNSUPPORTED_MODEL', '__proto__');
  });

  it('a tensor type it does not read (Q5_1) is ERR_DTYPE_UNSUPPORTED naming the tensor', async () => {
    const q5: GgufTensorToWrite = { name: 'blk.0.attn_q.weight', shape: [32, 32], type: 7, data: new Uint8Array(32 * 24) };
    await failure(openModelNode(await file('q5.gguf', tinyFile({ tensors: [q5] }))), 'ERR_DTYPE_UNSUPPORTED', 'blk.0.attn_q.weight', 'type 7');
  });

  it('rows that are not whole blocks, and overlapping tensors, are refused', async () => {
    const bytes = tinyFile({ tensors: [{ name: 'blk.0.attn_q.weight', shape: [32, 2], type: GGML_TYPE.F32, data: new Uint8Array(256) }] });
    // Point the second tensor's offset (the u64 after its type) at the first's data.
    const at = findLast(bytes, new TextEncoder().encode('blk.0.attn_q.weight')) + 19 + 4 + 16 + 4;
    const overlapped = bytes.slice();
    new DataView(overlapped.buffer).setBigUint64(at, 0n, true);
    await failure(openModelNode(await file('overlap.gguf', overlapped)), 'ERR_CHECKPOINT_CORRUPT', 'overlap');
    const misaligned = bytes.slice();
    new DataView(misaligned.buffer).setBigUint64(at, 1028n, true);
    await failure(openModelNode(await file('misaligned.gguf', misaligned)), 'ERR_CHECKPOINT_CORRUPT', 'not aligned');
    // A Q8_0 tensor whose rows claim 48 elements: one and a half blocks.
    const q8 = tinyFile({ tensors: [{ name: 'blk.0.attn_q.weight', shape: [64, 2], type: GGML_TYPE.Q8_0, data: new Uint8Array(2 * 34 * 2) }] });
    new DataView(q8.buffer).setBigUint64(findLast(q8, new TextEncoder().encode('blk.0.attn_q.weight')) + 19 + 4, 48n, true);
    await failure(openModelNode(await file('partial-block.gguf', q8)), 'ERR_CHECKPOINT_CORRUPT', 'whole Q8_0 blocks');
  });

  it('missing or wrong-typed metadata is named', async () => {
    const bytes = encodeGguf({ metadata: [{ key: 'general.architecture', type: 'string', value: 'llama' }], tensors: [] });
    await failure(openModelNode(await file('bare.gguf', bytes)), 'ERR_CHECKPOINT_CORRUPT', 'llama.embedding_length');
    const negative = tinyFile({ metadata: [{ key: 'llama.attention.head_count_kv', type: 'i32', value: -2 }] });
    await failure(openModelNode(await file('negative.gguf', negative)), 'ERR_CHECKPOINT_CORRUPT', 'head_count_kv');
  });
});

function findLast(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = haystack.length - needle.length; i >= 0; i--) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error('not found');
}

describe('over HTTP Range', () => {
  it('reads the index, then only the bytes of the tensors asked for', async () => {
    const path = await ggufFixture('tiny-llama', 'Q8_0');
    await writeFile(join(root, 'model.gguf'), await readFile(path));
    server.reset();
    const reader = await openModel(`${server.url}/model.gguf`, { cache: false });
    const index = server.sent();
    const name = 'model.layers.2.self_attn.q_proj.weight';
    const [info] = await reader.tensorInfo([name]);
    expect(info!.dtype).toBe('Q8_0');
    expect(info!.byteLength).toBe(64 * 2 * 34);
    server.reset();
    await reader.readFloat32([name]);
    expect(server.sent()).toBe(info!.byteLength);
    // The index of a file this small arrives in the parser's first chunk: the whole file, once.
    expect(index).toBe((await readFile(path)).byteLength);
  });

  it('GGUF references: a URL, a hub path (org/name/dir/file.gguf), a local path', () => {
    expect(splitGgufRef('https://host/a/b/m-Q4_K_M.gguf')).toEqual({ folder: 'https://host/a/b/', file: 'm-Q4_K_M.gguf' });
    expect(splitGgufRef('org/model-GGUF/q4/m.gguf')).toEqual({ folder: 'org/model-GGUF', file: 'q4/m.gguf' });
    expect(splitGgufRef('org/model-GGUF/../../etc/m.gguf').folder).not.toBe('org/model-GGUF');
    expect(splitGgufRef('/tmp/models/m.gguf')).toEqual({ folder: '/tmp/models/', file: 'm.gguf' });
  });
});

describe('the tokenizer from the metadata', () => {
  const cases = [
    ['byte-level BPE (Llama 3 pre-tokenizer)', 'bpe', byteLevelTokenizer('llama-bpe')],
    ['SentencePiece BPE (Llama 2 style)', 'spm', sentencePieceTokenizer()],
  ] as const;
  it.each(cases)('%s: the GGUF reader tokenizes as tokenizer.json does', async (_what, kind, files) => {
    const meta = ggufTokenizerMetadata(files.json, files.config);
    const bytes = tinyFile({ metadata: tokenizerKvs(meta) });
    const reader = await openModelNode(await file(`tokenizer-${kind}.gguf`, bytes));
    expect(reader.hasTokenizer).toBe(true);
    const fromGguf = await Tokenizer.fromReader(reader);
    const original = await Tokenizer.fromFiles(files.json, files.config);
    for (const text of ['Hello world, this is 2024.', '  spaced\tout\nlines ', 'naïve café — 東京 😀']) {
      expect(fromGguf.encode(text)).toEqual(original.encode(text));
      expect(fromGguf.decode(original.encode(text))).toBe(original.decode(original.encode(text)));
    }
  });

  it('a GGUF file has no other files beside it', async () => {
    const reader = await openModelNode(await ggufFixture(GGUF_MODELS[0]!, 'F32'));
    await failure(reader.readText('generation_config.json'), 'ERR_INVALID_ARGUMENT', 'metadata');
  });
});
