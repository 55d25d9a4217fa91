// Reading checkpoints over HTTP Range requests: only the asked-for bytes cross the wire, the cache
// serves repeats, Hugging Face ids resolve against a mirror, and the bytes arrive exact.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CacheApiRangeCache, headerLength, openCheckpoint, resolveModelUrl, tensorsOfLayers, type ReadProgress,
} from '../client/model/checkpoint/index.ts';
import { FsRangeCache, openCheckpointNode } from '../client/model/checkpoint/node.ts';
import type { TensorToWrite } from '../client/model/checkpoint/safetensors.ts';
import { tinyLlamaTensors, writeModel } from './helpers/checkpoint-fixture.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';

let root: string;
let server: RangeServer;
let single: { tensors: Record<string, TensorToWrite>; file: Uint8Array };
const sharded: Record<string, Record<string, TensorToWrite>> = {};
const SHARD_1 = 'model-00001-of-00002.safetensors';
const SHARD_2 = 'model-00002-of-00002.safetensors';
const shardOf = (name: string) => (/layers\.[01]\.|embed_tokens/.test(name) ? 0 : 1);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'aigrid-ckpt-'));
  const tensors = tinyLlamaTensors(1);
  single = { tensors, file: (await writeModel(join(root, 'tiny'), tensors)).get('model.safetensors')! };
  for (const [revision, seed] of [['main', 2], ['v2', 3]] as const) {
    sharded[revision] = tinyLlamaTensors(seed);
    await writeModel(join(root, 'org', 'tiny-sharded', revision), sharded[revision], { shardOf, shards: 2, generationConfig: { max_length: 64 } });
  }
  server = await startRangeServer(root);
});

afterAll(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

let cacheDir: string;
beforeEach(async () => {
  server.reset();
  cacheDir = await mkdtemp(join(root, 'cache-'));
});

/** GET requests with a Range header for a file. */
const rangeGets = (file: string) => server.requests.filter((r) => r.method === 'GET' && r.file.endsWith(file) && r.range);
/** A tensor's [begin, end) in the single-file fixture (encodeSafetensors writes in insertion order). */
function extent(name: string): [number, number] {
  let at = 8 + headerLength(single.file);
  for (const [n, t] of Object.entries(single.tensors)) {
    if (n === name) return [at, at + t.data.byteLength];
    at += t.data.byteLength;
  }
  throw new Error(`no tensor ${name}`);
}
const tensorBytes = (tensors: Record<string, TensorToWrite>, names: string[]) => names.reduce((s, n) => s + tensors[n]!.data.byteLength, 0);

describe('reading over HTTP Range requests', () => {
  it('downloads the two header ranges plus exactly the tensors of layer 2, in one request', async () => {
    const reader = await openCheckpointNode(`${server.url}/tiny`, { cacheDir });
    expect(reader.config.model_type).toBe('llama');
    expect(reader.hasTokenizer && reader.hasTokenizerConfig).toBe(true);
    expect(reader.generationConfig).toBeUndefined();
    expect(reader.listTensors()).toEqual(Object.keys(single.tensors));

    const names = tensorsOfLayers(reader.listTensors(), 2, 3);
    expect(names).toHaveLength(9);
    const out = await reader.readTensors(names);
    const header = 8 + headerLength(single.file);
    expect(server.sent('tiny/model.safetensors')).toBe(header + tensorBytes(single.tensors, names));
    expect(rangeGets('model.safetensors').map((r) => r.range)).toEqual([
      'bytes=0-7', `bytes=8-${header - 1}`, expect.stringMatching(/^bytes=\d+-\d+$/),
    ]);
    for (const name of names) {
      const t = out.get(name)!;
      expect(t.dtype).toBe(single.tensors[name]!.dtype);
      expect(t.shape).toEqual(single.tensors[name]!.shape);
      expect(Buffer.from(t.bytes).equals(Buffer.from(single.tensors[name]!.data))).toBe(true);
    }
  });

  it('fetches non-adjacent tensors as separate ranges, never the bytes between them', async () => {
    const reader = await openCheckpoint(`${server.url}/tiny/`, { cache: false });
    server.reset();
    const names = ['model.layers.1.self_attn.q_proj.weight', 'model.layers.3.mlp.down_proj.weight'];
    await reader.readTensors(names);
    expect(rangeGets('model.safetensors')).toHaveLength(2);
    expect(server.sent('model.safetensors')).toBe(tensorBytes(single.tensors, names));
  });

  it('serves the second read, headers included, from the disk cache', async () => {
    const names = tensorsOfLayers(Object.keys(single.tensors), 2, 3);
    const first = await (await openCheckpointNode(`${server.url}/tiny`, { cacheDir })).readTensors(names);
    server.reset();
    const second = await (await openCheckpointNode(`${server.url}/tiny`, { cacheDir })).readTensors(names);
    expect(server.sent('model.safetensors')).toBe(0);
    expect(rangeGets('model.safetensors')).toHaveLength(0);
    for (const name of names) expect(second.get(name)!.bytes).toEqual(first.get(name)!.bytes);
  });

  it('refetches damaged cache entries instead of using them', async () => {
    const url = `${server.url}/tiny/model.safetensors`;
    const [q, k] = ['model.layers.2.self_attn.q_proj.weight', 'model.layers.2.self_attn.k_proj.weight'] as const;
    await (await openCheckpointNode(`${server.url}/tiny`, { cacheDir })).readTensors([q, k]);
    const cache = new FsRangeCache(cacheDir);
    const length = headerLength(single.file);
    const fileSize = single.file.byteLength;
    const [qb, qe] = extent(q);
    const [kb, ke] = extent(k);
    // A header that no longer parses, a tensor cut short, a tensor cached from a file of another size.
    await cache.put(url, 8, 8 + length, { bytes: new Uint8Array(length).fill(0x7b), fileSize });
    await cache.put(url, qb, qe, { bytes: single.file.subarray(qb, qe - 1), fileSize });
    await cache.put(url, kb, ke, { bytes: single.file.subarray(kb, ke), fileSize: fileSize + 1 });
    server.reset();
    const reader = await openCheckpointNode(`${server.url}/tiny`, { cacheDir });
    expect(server.sent('model.safetensors')).toBe(length);
    const out = await reader.readTensors([q, k]);
    expect(server.sent('model.safetensors')).toBe(length + (qe - qb) + (ke - kb));
    expect(out.get(q)!.bytes).toEqual(single.tensors[q]!.data);
    expect(out.get(k)!.bytes).toEqual(single.tensors[k]!.data);
    // The refetched entries replaced the bad ones.
    server.reset();
    await (await openCheckpointNode(`${server.url}/tiny`, { cacheDir })).readTensors([q, k]);
    expect(server.sent('model.safetensors')).toBe(0);
  });

  it('reports monotonic progress that ends at the total', async () => {
    const reader = await openCheckpointNode('org/tiny-sharded', { baseUrl: server.url, cacheDir, concurrency: 3 });
    const names = [...tensorsOfLayers(reader.listTensors(), 1, 3), 'lm_head.weight'];
    const events: ReadProgress[] = [];
    await reader.readTensors(names, { onProgress: (p) => events.push(p) });
    const total = tensorBytes(sharded.main!, names);
    expect(events.length).toBeGreaterThan(1);
    expect(events.every((e) => e.bytesTotal === total)).toBe(true);
    for (let i = 1; i < events.length; i++) expect(events[i]!.bytesDone).toBeGreaterThan(events[i - 1]!.bytesDone);
    expect(events.at(-1)!.bytesDone).toBe(total);
    expect(new Set(events.map((e) => e.file))).toEqual(new Set([SHARD_1, SHARD_2]));
  });
});

describe('Hugging Face ids', () => {
  it('resolves org/name with a mirror base URL and revision', () => {
    expect(resolveModelUrl('org/name')).toBe('https://huggingface.co/org/name/resolve/main/');
    expect(resolveModelUrl('org/name', { baseUrl: 'http://127.0.0.1:9/', revision: 'refs/pr/1' }))
      .toBe('http://127.0.0.1:9/org/name/resolve/refs%2Fpr%2F1/');
    expect(resolveModelUrl('http://host/models/tiny')).toBe('http://host/models/tiny/');
  });

  it('reads a sharded model by id from a mirror, touching only the shard that holds the layer', async () => {
    const reader = await openCheckpointNode('org/tiny-sharded', { baseUrl: server.url, revision: 'v2', cacheDir });
    expect(reader.weightFiles()).toEqual([SHARD_1, SHARD_2]);
    expect(reader.generationConfig).toEqual({ max_length: 64 });
    const names = tensorsOfLayers(reader.listTensors(), 2, 3);
    const out = await reader.readTensors(names);
    expect(server.requests.every((r) => r.file.startsWith('org/tiny-sharded/v2/'))).toBe(true);
    expect(server.sent(SHARD_1)).toBe(0);
    const shard2 = server.requests.filter((r) => r.file.endsWith(SHARD_2));
    expect(shard2.map((r) => r.range)).toHaveLength(3);
    for (const name of names) expect(out.get(name)!.bytes).toEqual(sharded.v2![name]!.data);
    expect(sharded.v2![names[0]!]!.data).not.toEqual(sharded.main![names[0]!]!.data);
  });

  it('defaults to the main revision and uses the injected fetch', async () => {
    const urls: string[] = [];
    const fetchSpy: typeof fetch = (input, init) => {
      urls.push(String(input));
      return fetch(input, init);
    };
    const reader = await openCheckpoint('org/tiny-sharded', { baseUrl: server.url, fetch: fetchSpy, cache: false });
    const out = await reader.readTensors(['model.norm.weight']);
    expect(out.get('model.norm.weight')!.bytes).toEqual(sharded.main!['model.norm.weight']!.data);
    expect(urls).toContain(`${server.url}/org/tiny-sharded/resolve/main/config.json`);
    expect(urls.every((u) => u.startsWith(`${server.url}/org/tiny-sharded/resolve/main/`))).toBe(true);
  });
});

describe('other sources and caches', () => {
  it('reads a local folder in place', async () => {
    const reader = await openCheckpointNode(join(root, 'tiny'));
    const out = await reader.readTensors(['model.embed_tokens.weight', 'lm_head.weight']);
    expect(out.get('lm_head.weight')!.bytes).toEqual(single.tensors['lm_head.weight']!.data);
    expect(out.get('model.embed_tokens.weight')!.bytes).toEqual(single.tensors['model.embed_tokens.weight']!.data);
    expect(server.requests).toHaveLength(0);
  });

  it('caches ranges in the Cache API when given one', async () => {
    const storage = fakeCacheStorage();
    const cache = new CacheApiRangeCache('aigrid-weights', storage);
    const names = tensorsOfLayers(Object.keys(single.tensors), 0, 1);
    await (await openCheckpoint(`${server.url}/tiny`, { cache })).readTensors(names);
    expect(server.sent('model.safetensors')).toBeGreaterThan(0);
    server.reset();
    const out = await (await openCheckpoint(`${server.url}/tiny`, { cache })).readTensors(names);
    expect(server.sent('model.safetensors')).toBe(0);
    for (const name of names) expect(out.get(name)!.bytes).toEqual(single.tensors[name]!.data);
    expect(storage.names).toEqual(['aigrid-weights']);
  });
});

/** The slice of CacheStorage the loader uses, over a Map (Node has no Cache API). */
function fakeCacheStorage(): CacheStorage & { names: string[] } {
  const caches = new Map<string, Map<string, Response>>();
  const open = async (name: string) => {
    let entries = caches.get(name);
    if (!entries) caches.set(name, (entries = new Map()));
    const store = entries;
    return {
      match: async (key: string) => store.get(key)?.clone(),
      put: async (key: string, res: Response) => {
        if (res.status === 206) throw new TypeError('Cache.put refuses partial responses');
        store.set(key, res);
      },
      delete: async (key: string) => store.delete(key),
    } as unknown as Cache;
  };
  return { open, get names() { return [...caches.keys()]; } } as unknown as CacheStorage & { names: string[] };
}
