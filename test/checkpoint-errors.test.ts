// Every way a checkpoint download can go wrong ends in a named AigridError, never in wrong bytes.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HttpSource, openCheckpoint, type CheckpointReader } from '../client/model/checkpoint/index.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import { AigridError, type ErrorCode } from '../protocol/index.ts';
import { tinyLlamaTensors, writeModel } from './helpers/checkpoint-fixture.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';

let root: string;
let server: RangeServer;
const tensors = tinyLlamaTensors(7);
const Q2 = 'model.layers.2.self_attn.q_proj.weight';

/** The AigridError a promise rejects with, checked for its code and for each text in its message. */
async function failure(promise: Promise<unknown>, code: ErrorCode, ...texts: string[]): Promise<AigridError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err, `expected ${code}`).toBeInstanceOf(AigridError);
  expect((err as AigridError).code, (err as Error).message).toBe(code);
  for (const text of texts) expect((err as AigridError).message).toContain(text);
  return err as AigridError;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'aigrid-ckpt-err-'));
  const file = (await writeModel(join(root, 'tiny'), tensors)).get('model.safetensors')!;
  await writeModel(join(root, 'ints'), {
    'model.layers.0.ids': { dtype: 'I64', shape: [2], data: new Uint8Array(16).fill(1) },
    'model.norm.weight': tensors['model.norm.weight']!,
  });
  // Cut inside the tensor data, inside the header, and before the length prefix ends.
  for (const [name, bytes] of [['truncated', file.subarray(0, file.byteLength - 5)], ['cut-header', file.subarray(0, 40)], ['five-bytes', file.subarray(0, 5)]] as const) {
    await writeModel(join(root, name), {});
    await writeFile(join(root, name, 'model.safetensors'), bytes);
  }
  const garbage = new Uint8Array(24).fill(0x41);
  new DataView(garbage.buffer).setBigUint64(0, 16n, true);
  await writeModel(join(root, 'bad-header'), {});
  await writeFile(join(root, 'bad-header', 'model.safetensors'), garbage);
  // An index that lists model.norm.weight in a shard that lacks it, and a second shard cut short.
  const shards = await writeModel(join(root, 'liar'), tensors, { shardOf: (n) => (n.includes('layers.') ? 0 : 1), shards: 2 });
  const index = { weight_map: { ...Object.fromEntries(Object.keys(tensors).map((n) => [n, n.includes('layers.') ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors'])), 'model.norm.weight': 'model-00001-of-00002.safetensors' } };
  await writeFile(join(root, 'liar', 'model.safetensors.index.json'), JSON.stringify(index));
  const second = shards.get('model-00002-of-00002.safetensors')!;
  await writeFile(join(root, 'liar', 'model-00002-of-00002.safetensors'), second.subarray(0, second.byteLength - 1));
  await writeModel(join(root, 'escape'), {});
  await rm(join(root, 'escape', 'model.safetensors'));
  await writeFile(join(root, 'escape', 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w: '../tiny/model.safetensors' } }));
  await mkdir(join(root, 'no-weights'));
  await writeFile(join(root, 'no-weights', 'config.json'), '{}');
  await mkdir(join(root, 'bad-config'));
  await writeFile(join(root, 'bad-config', 'config.json'), '{"model_type": ');
  server = await startRangeServer(root);
});

afterAll(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

beforeEach(() => server.reset());

const open = (folder: string): Promise<CheckpointReader> => openCheckpoint(`${server.url}/${folder}`, { cache: false });

describe('servers that misbehave', () => {
  it('refuses a server that ignores Range instead of downloading whole files', async () => {
    server.faults.ignoreRange = true;
    await failure(open('tiny'), 'ERR_FETCH_FAILED', `${server.url}/tiny/model.safetensors`, 'ignored the Range');
    server.faults.ignoreRange = false;
    const reader = await open('tiny');
    server.faults.ignoreRange = true;
    await failure(reader.readTensors([Q2]), 'ERR_FETCH_FAILED', 'ignored the Range', 'must answer 206');
  });

  it('refuses a short body and caches nothing from it', async () => {
    const cacheDir = join(root, 'cache-short');
    const reader = await openCheckpointNode(`${server.url}/tiny`, { cacheDir });
    server.faults.truncateBy = 3;
    await failure(reader.readTensors([Q2]), 'ERR_FETCH_FAILED', `${server.url}/tiny/model.safetensors`, 'short body');
    server.reset();
    const out = await (await openCheckpointNode(`${server.url}/tiny`, { cacheDir })).readTensors([Q2]);
    expect(out.get(Q2)!.bytes).toEqual(tensors[Q2]!.data);
    expect(server.sent('model.safetensors')).toBe(tensors[Q2]!.data.byteLength);
  });

  it('names the URL and status of a missing model', async () => {
    await failure(open('nowhere'), 'ERR_FETCH_FAILED', `${server.url}/nowhere/config.json`, 'HTTP 404');
    await failure(openCheckpoint('org/missing', { baseUrl: server.url, cache: false }), 'ERR_FETCH_FAILED', '/org/missing/resolve/main/config.json', '404');
  });

  it('turns fetch failures, wrong Content-Range and error statuses into ERR_FETCH_FAILED', async () => {
    const reader = await open('tiny');
    const base = `${server.url}/tiny/`;
    const lying: typeof fetch = async () => new Response(new Uint8Array(4), { status: 206, headers: { 'content-range': 'bytes 0-3/100' } });
    await failure(new HttpSource(base, { fetch: lying }).read('model.safetensors', 8, 12), 'ERR_FETCH_FAILED', 'asked for bytes 8-11', 'bytes 0-3/100');
    const down: typeof fetch = async () => {
      throw new TypeError('connect ECONNREFUSED');
    };
    const err = await failure(new HttpSource(base, { fetch: down }).read('model.safetensors', 0, 8), 'ERR_FETCH_FAILED', 'ECONNREFUSED');
    expect(err.cause).toBeInstanceOf(TypeError);
    const broken: typeof fetch = async () => new Response('oops', { status: 500, statusText: 'Internal Server Error' });
    await failure(new HttpSource(base, { fetch: broken }).text('config.json'), 'ERR_FETCH_FAILED', 'HTTP 500 Internal Server Error');
    const long: typeof fetch = async () => new Response(new Uint8Array(6), { status: 206, headers: { 'content-range': 'bytes 0-3/100' } });
    await failure(new HttpSource(base, { fetch: long }).read('model.safetensors', 0, 4), 'ERR_FETCH_FAILED', 'longer than');
    expect(reader.listTensors()).toContain(Q2);
  });

  it('stops on abort, before or during a download', async () => {
    const reader = await open('tiny');
    const aborted = new AbortController();
    aborted.abort();
    await expect(reader.readTensors([Q2], { signal: aborted.signal })).rejects.toMatchObject({ name: 'AbortError' });
    server.faults.delayMs = 2000;
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    const started = Date.now();
    await expect(reader.readTensors([Q2], { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(1500);
  });
});

describe('checkpoints that are wrong', () => {
  it('names a tensor that is not there, and the file it was looked for in', async () => {
    const reader = await open('tiny');
    server.reset();
    await failure(reader.readTensors([Q2, 'model.layers.99.mlp.up_proj.weight']), 'ERR_TENSOR_MISSING', 'model.layers.99.mlp.up_proj.weight', 'model.safetensors');
    expect(server.requests).toHaveLength(0);
    await failure((await open('liar')).readTensors(['model.norm.weight']), 'ERR_TENSOR_MISSING', 'model.norm.weight', 'model-00001-of-00002.safetensors');
  });

  it('refuses to read a non-float dtype as floats before downloading it', async () => {
    const reader = await open('ints');
    server.reset();
    await failure(reader.readFloat32(['model.norm.weight', 'model.layers.0.ids']), 'ERR_DTYPE_UNSUPPORTED', 'model.layers.0.ids', 'I64');
    expect(server.sent()).toBe(0);
    const raw = await reader.readTensors(['model.layers.0.ids']);
    expect(raw.get('model.layers.0.ids')).toMatchObject({ dtype: 'I64', shape: [2], bytes: new Uint8Array(16).fill(1) });
    const floats = await reader.readFloat32(['model.norm.weight']);
    expect(floats.get('model.norm.weight')!.data).toEqual(new Float32Array(tensors['model.norm.weight']!.data.slice().buffer));
  });

  it('reports truncated and corrupt files as ERR_CHECKPOINT_CORRUPT', async () => {
    await failure(open('truncated'), 'ERR_CHECKPOINT_CORRUPT', 'truncated');
    await failure(open('cut-header'), 'ERR_CHECKPOINT_CORRUPT', 'does not fit');
    await failure(open('five-bytes'), 'ERR_CHECKPOINT_CORRUPT', 'too short');
    await failure(open('bad-header'), 'ERR_CHECKPOINT_CORRUPT', 'not JSON');
    await failure(open('bad-config'), 'ERR_CHECKPOINT_CORRUPT', 'config.json');
    await failure(open('escape'), 'ERR_CHECKPOINT_CORRUPT', '../tiny/model.safetensors');
    // A sharded model opens from its index; the cut shard fails when its header is first read.
    const liar = await open('liar');
    await failure(liar.readTensors(['lm_head.weight']), 'ERR_CHECKPOINT_CORRUPT', 'model-00002-of-00002.safetensors');
    await failure(openCheckpointNode(join(root, 'truncated')), 'ERR_CHECKPOINT_CORRUPT', 'truncated');
  });

  it('says when a folder has no safetensors weights, or the reference is not a model', async () => {
    await failure(open('no-weights'), 'ERR_UNSUPPORTED_MODEL', 'model.safetensors');
    await failure(openCheckpointNode(join(root, 'no-weights')), 'ERR_UNSUPPORTED_MODEL', 'no-weights');
    await failure(openCheckpoint('not a model', { cache: false }), 'ERR_INVALID_ARGUMENT', 'not a model');
  });
});
