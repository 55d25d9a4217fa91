// The tiny BERT fixtures against their float64 reference: @huggingface/transformers loads the ONNX
// folders offline (and again over HTTP from a loopback static server) and its feature-extraction
// and text-classification pipelines must give the reference's numbers. Opens a socket: run inside
// `unshare -n bash -c 'ip link set lo up; npx vitest run test/bert-fixture.test.ts'`.
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AutoModel, AutoTokenizer, env, pipeline, Tensor } from '@huggingface/transformers';
import type { FeatureExtractionPipeline, TextClassificationPipeline } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BertWeights64 } from './fixtures/bert-reference.ts';
import { bertEncode, bertHiddenStates, classify, meanPooledEmbedding, widen } from './fixtures/bert-reference.ts';
import { bertFixture, writeBertFixtures } from './fixtures/onnx-bert.ts';

const TOLERANCE = 1e-5;
const fixture = bertFixture();
const w64: BertWeights64 = widen(fixture.weights);
const { config } = fixture;

const SINGLE = 'The quick brown fox jumps over the lazy dog.';
/** Three lengths (the pipeline pads them to the longest); '!' and 'sat' are not in the vocabulary. */
const BATCH = ['Hello world!', 'Once upon a time, a little robot wanted to learn how to paint the sky.', 'The cat sat.'];

const ENV_KEYS = [
  'allowLocalModels', 'allowRemoteModels', 'localModelPath', 'remoteHost', 'remotePathTemplate', 'useFSCache', 'cacheDir', 'useCustomCache', 'customCache',
] as const;
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, env[k]]));

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'aigrid-bert-'));
  await writeBertFixtures(dir, fixture);
});
afterAll(async () => {
  Object.assign(env, savedEnv);
  await rm(dir, { recursive: true, force: true });
});

function reference(text: string, pair?: string) {
  const { ids, typeIds } = bertEncode(fixture.vocab, text, pair);
  return { ids, typeIds, hidden: bertHiddenStates(config, w64, ids, typeIds) };
}

/** Largest |actual - expected| over the first `expected.length` rows of row `batch` of a [B, S, H] tensor. */
function hiddenDiff(actual: Tensor, batch: number, expected: Float64Array[]): number {
  const [, seq, width] = actual.dims as [number, number, number];
  const data = actual.data as Float32Array;
  let worst = 0;
  expected.forEach((row, p) => row.forEach((v, i) => (worst = Math.max(worst, Math.abs(data[(batch * seq + p) * width + i]! - v)))));
  return worst;
}

const rows = (t: Tensor): number[][] => t.tolist() as number[][];
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!)));

/** The Web Cache API's match/put over a Map; each match answers a fresh Response (a body reads once). */
function memoryCache(): { match(key: string): Promise<Response | undefined>; put(key: string, response: Response): Promise<void> } {
  const stored = new Map<string, { body: ArrayBuffer; headers: Headers }>();
  return {
    async match(key) {
      const hit = stored.get(key);
      return hit && new Response(hit.body, { headers: hit.headers });
    },
    async put(key, response) {
      stored.set(key, { body: await response.arrayBuffer(), headers: new Headers(response.headers) });
    },
  };
}

function useLocalFolder(): void {
  env.allowLocalModels = true;
  env.allowRemoteModels = false;
  env.localModelPath = `${dir}/`;
  env.useFSCache = false;
}

describe('tiny BERT through @huggingface/transformers, from a local folder', () => {
  let extractor: FeatureExtractionPipeline;
  let classifier: TextClassificationPipeline;

  beforeAll(async () => {
    useLocalFolder();
    extractor = await pipeline('feature-extraction', 'bert-embed', { dtype: 'fp32', device: 'cpu' });
    classifier = await pipeline('text-classification', 'bert-classify', { dtype: 'fp32', device: 'cpu' });
  });
  afterAll(async () => {
    await extractor?.dispose();
    await classifier?.dispose();
  });

  it('tokenizes to [CLS] words [SEP] with the ids and token types the reference expects', () => {
    const vocab = fixture.vocab;
    for (const text of [SINGLE, ...BATCH]) {
      const enc = extractor.tokenizer(text);
      expect((enc.input_ids as Tensor).tolist()[0]).toEqual(bertEncode(vocab, text).ids.map(BigInt));
      expect((enc.token_type_ids as Tensor).tolist()[0]).toEqual(bertEncode(vocab, text).typeIds.map(BigInt));
    }
    const sky = bertEncode(vocab, 'Paint the SKY, robot!').ids.map((id) => vocab[id]);
    expect(sky).toEqual(['[CLS]', 'paint', 'the', 'sky', ',', 'robot', '[UNK]', '[SEP]']);
    const pair = extractor.tokenizer('the sun', { text_pair: 'a moon' });
    expect((pair.input_ids as Tensor).tolist()[0]).toEqual(bertEncode(vocab, 'the sun', 'a moon').ids.map(BigInt));
    expect((pair.token_type_ids as Tensor).tolist()[0]).toEqual([0, 0, 0, 0, 1, 1, 1].map(BigInt));
  });

  it('gives the reference hidden states and mean-pooled embedding for one text', async () => {
    const ref = reference(SINGLE);
    const hidden = await extractor(SINGLE, { pooling: 'none' });
    expect(hidden.dims).toEqual([1, ref.ids.length, config.hidden]);
    expect(hiddenDiff(hidden, 0, ref.hidden)).toBeLessThan(TOLERANCE);
    const pooled = await extractor(SINGLE, { pooling: 'mean', normalize: true });
    expect(pooled.dims).toEqual([1, config.hidden]);
    expect(maxDiff(rows(pooled)[0]!, meanPooledEmbedding(ref.hidden))).toBeLessThan(TOLERANCE);
  });

  it('pads a batch of three lengths without changing any sentence (attention mask)', async () => {
    const refs = BATCH.map((t) => reference(t));
    const lengths = refs.map((r) => r.ids.length);
    expect(new Set(lengths).size).toBe(3);
    const hidden = await extractor(BATCH, { pooling: 'none' });
    expect(hidden.dims).toEqual([3, Math.max(...lengths), config.hidden]);
    refs.forEach((r, b) => expect(hiddenDiff(hidden, b, r.hidden)).toBeLessThan(TOLERANCE));
    const pooled = rows(await extractor(BATCH, { pooling: 'mean', normalize: true }));
    const expected = refs.map((r) => meanPooledEmbedding(r.hidden));
    pooled.forEach((row, b) => expect(maxDiff(row, expected[b]!)).toBeLessThan(TOLERANCE));
    // Different sentences give clearly different unit vectors.
    for (let a = 0; a < 3; a++) {
      for (let b = a + 1; b < 3; b++) expect(expected[a]!.reduce((s, v, i) => s + v * expected[b]![i]!, 0)).toBeLessThan(0.9);
    }
  });

  it('feeds token_type_ids through: a sentence pair gives the reference, which depends on the types', async () => {
    const tokenizer = await AutoTokenizer.from_pretrained('bert-embed');
    const model = await AutoModel.from_pretrained('bert-embed', { dtype: 'fp32', device: 'cpu' });
    try {
      const ref = reference('the sun', 'a moon');
      const out = await model(tokenizer('the sun', { text_pair: 'a moon' }));
      expect(hiddenDiff(out.last_hidden_state as Tensor, 0, ref.hidden)).toBeLessThan(TOLERANCE);
      const untyped = bertHiddenStates(config, w64, ref.ids, ref.ids.map(() => 0));
      expect(Math.max(...untyped.map((row, p) => maxDiff(row, ref.hidden[p]!)))).toBeGreaterThan(0.05);
    } finally {
      await model.dispose();
    }
  });

  it('classifies with the reference softmax, and the scores are far from a coin toss', async () => {
    const texts = [SINGLE, ...BATCH];
    const expected = texts.map((t) => classify(config, w64, reference(t).hidden).probs);
    const got = (await classifier(texts, { top_k: 2 })) as { label: string; score: number }[][];
    expect(got).toHaveLength(texts.length);
    got.forEach((scores, i) => {
      expect(scores.map((s) => s.label).sort()).toEqual([...config.labels].sort());
      for (const s of scores) expect(Math.abs(s.score - expected[i]![config.labels.indexOf(s.label)]!)).toBeLessThan(TOLERANCE);
      expect(Math.abs(scores[0]!.score - 0.5)).toBeGreaterThan(0.1);
    });
    // The default top-1 answer names the reference's arg-max, and both labels occur.
    const top = (await classifier(texts)) as { label: string; score: number }[];
    const argmax = expected.map((p) => config.labels[p[0]! > p[1]! ? 0 : 1]);
    expect(top.map((t) => t.label)).toEqual(argmax);
    expect(new Set(argmax).size).toBe(2);
  });
});

describe('the same folders over HTTP (env.remoteHost + remotePathTemplate)', () => {
  let server: Server;
  const requests: string[] = [];

  beforeAll(async () => {
    // A static server for DIR under /fixtures/, as the signaling server's static files would be.
    server = createServer((req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
      requests.push(path);
      const rel = path.startsWith('/fixtures/') ? path.slice('/fixtures/'.length) : null;
      if (rel === null || rel.split('/').some((part) => part === '..' || part === '')) return void res.writeHead(404).end();
      readFile(join(dir, rel)).then(
        (body) => res.writeHead(200, { 'content-length': body.length }).end(body),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    env.allowLocalModels = false;
    env.allowRemoteModels = true;
    env.remoteHost = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    env.remotePathTemplate = '{model}/';
  });
  afterAll(async () => {
    Object.assign(env, savedEnv);
    await new Promise((resolve) => server?.close(resolve));
  });

  it('loads fixtures/bert-embed from http://127.0.0.1:PORT/fixtures/bert-embed/ with no file cache', async () => {
    // In Node the ONNX file must come back from a cache (onnxruntime-node is handed a path or the
    // cache's bytes), so with useFSCache off a cache in memory stands in and nothing touches disk.
    const cacheDir = join(dir, 'cache-off');
    env.useFSCache = false;
    env.cacheDir = cacheDir;
    env.useCustomCache = true;
    env.customCache = memoryCache();
    const extractor = await pipeline('feature-extraction', 'fixtures/bert-embed', { dtype: 'fp32', device: 'cpu' });
    try {
      const pooled = rows(await extractor(BATCH, { pooling: 'mean', normalize: true }));
      pooled.forEach((row, b) => expect(maxDiff(row, meanPooledEmbedding(reference(BATCH[b]!).hidden))).toBeLessThan(TOLERANCE));
    } finally {
      await extractor.dispose();
    }
    for (const file of ['config.json', 'tokenizer_config.json', 'tokenizer.json', 'onnx/model.onnx']) {
      expect(requests).toContain(`/fixtures/bert-embed/${file}`);
    }
    expect(existsSync(cacheDir)).toBe(false);
  });

  it('with env.useFSCache on, keeps what it downloaded under env.cacheDir/<model>/', async () => {
    const cacheDir = join(dir, 'cache-on');
    env.useCustomCache = false;
    env.customCache = null;
    env.useFSCache = true;
    env.cacheDir = cacheDir;
    const classifier = await pipeline('text-classification', 'fixtures/bert-classify', { dtype: 'fp32', device: 'cpu' });
    try {
      const [top] = (await classifier(SINGLE, { top_k: 2 })) as { label: string; score: number }[];
      const probs = classify(config, w64, reference(SINGLE).hidden).probs;
      expect(Math.abs(top!.score - probs[config.labels.indexOf(top!.label)]!)).toBeLessThan(TOLERANCE);
    } finally {
      await classifier.dispose();
    }
    const cached = await readdir(join(cacheDir, 'fixtures/bert-classify'), { recursive: true });
    expect(cached).toEqual(expect.arrayContaining(['config.json', 'tokenizer.json', 'tokenizer_config.json', join('onnx', 'model.onnx')]));
  });
});
