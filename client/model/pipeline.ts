// A whole-model @huggingface/transformers pipeline (feature-extraction or text-classification)
// loaded from an http(s) folder URL, run on batches of texts. transformers.js finds remote files
// through its global `env` (host + path template), so loads in one process take turns: each sets
// `env` for its own URL and holds it until its files are read.
import { AigridError, type LabelScore, type PipelineTask } from '../../protocol/index.ts';

export interface PipelineOutput {
  /** feature-extraction: one mean-pooled, L2-normalised embedding per text. */
  embeddings?: number[][];
  /** text-classification: every label with its score per text, best first. */
  labels?: LabelScore[][];
  /** Tokens the texts took, without padding. */
  tokens: number;
}

export interface PipelineRunner {
  readonly task: PipelineTask;
  run(texts: string[]): Promise<PipelineOutput>;
  dispose(): Promise<void>;
}

/** 'cpu' (onnxruntime-node), 'wasm' (onnxruntime-web in pages) or 'webgpu'. */
export type PipelineDevice = 'cpu' | 'wasm' | 'webgpu';

export interface PipelineLoadOptions {
  device: PipelineDevice;
  /** Where onnxruntime-web's .wasm files are served from, in pages (default: its own CDN choice). */
  wasmPaths?: string;
}

type Transformers = typeof import('@huggingface/transformers');
type Callable = ((texts: string[], options?: Record<string, unknown>) => Promise<unknown>) & {
  tokenizer: (texts: string[], options: Record<string, unknown>) => { attention_mask: { tolist(): number[][] } };
  dispose(): Promise<void>;
};

let turn: Promise<unknown> = Promise.resolve();

/** Loads `task` from the folder at `url` (what remoteWeights resolved a block's source to). */
export async function loadPipeline(task: PipelineTask, url: string, options: PipelineLoadOptions): Promise<PipelineRunner> {
  const { host, model } = splitFolderUrl(url);
  const transformers = (await import('@huggingface/transformers')) as Transformers;
  const load = turn.then(async () => {
    const { env } = transformers;
    Object.assign(env, { allowLocalModels: false, allowRemoteModels: true, remoteHost: host, remotePathTemplate: '{model}/' });
    // A Node peer writes nothing a stranger names to its disk: the files pass through a cache in
    // memory for this load only (transformers.js reads a remote model file back from its cache).
    const inNode = typeof window === 'undefined' && typeof process !== 'undefined' && !!process.versions?.node;
    if (inNode) Object.assign(env, { useFSCache: false, useCustomCache: true, customCache: loadCache() });
    if (options.wasmPaths && env.backends.onnx.wasm) env.backends.onnx.wasm.wasmPaths = options.wasmPaths;
    try {
      return (await transformers.pipeline(task, model, { device: options.device, dtype: 'fp32' })) as unknown as Callable;
    } finally {
      if (inNode) env.customCache = null;
    }
  });
  turn = load.catch(() => {});
  let pipe: Callable;
  try {
    pipe = await load;
  } catch (err) {
    throw new AigridError('ERR_FETCH_FAILED', `${task} pipeline from ${url} did not load: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
  const tokens = (texts: string[]) => pipe.tokenizer(texts, { padding: true, truncation: true }).attention_mask.tolist().flat().reduce((a, b) => a + Number(b), 0);
  return {
    task,
    async run(texts) {
      if (task === 'feature-extraction') {
        const out = (await pipe(texts, { pooling: 'mean', normalize: true })) as { tolist(): number[][] };
        return { embeddings: out.tolist(), tokens: tokens(texts) };
      }
      const out = (await pipe(texts, { top_k: null })) as LabelScore[] | LabelScore[][];
      // One text gives a flat list of labels; several give one list each.
      const labels = texts.length === 1 && !Array.isArray(out[0]) ? [out as LabelScore[]] : (out as LabelScore[][]);
      return { labels: labels.map((row) => row.map(({ label, score }) => ({ label: String(label), score }))), tokens: tokens(texts) };
    },
    dispose: () => pipe.dispose(),
  };
}

/** Responses of one load, kept until it ends; each match answers a fresh Response. */
function loadCache(): { match(key: string): Promise<Response | undefined>; put(key: string, response: Response): Promise<void> } {
  const stored = new Map<string, { body: ArrayBuffer; headers: Headers }>();
  return {
    match: async (key) => {
      const hit = stored.get(key);
      return hit && new Response(hit.body, { headers: hit.headers });
    },
    put: async (key, response) => {
      stored.set(key, { body: await response.arrayBuffer(), headers: new Headers(response.headers) });
    },
  };
}

/** `http://host:port/a/b/` -> host `http://host:port/`, model `a/b` (transformers.js's id). */
function splitFolderUrl(url: string): { host: string; model: string } {
  const parsed = new URL(url);
  const model = parsed.pathname.replace(/^\/+|\/+$/g, '');
  if (!model) throw new AigridError('ERR_INVALID_ARGUMENT', `a pipeline's weights must be in a folder below the host, not at ${url}`);
  return { host: `${parsed.origin}/`, model };
}
