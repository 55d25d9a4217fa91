// The SDK's grid: one connection to a network (a mesh peer that offers no memory until it
// contributes), OpenAI-shaped chat and text completions over the models the network serves, the
// token-level generate(), serving a model, and contributing this tab or process as a peer.
import { modelSpecFromCheckpoint, type ModelSpecOptions } from '../grid/model-spec.ts';
import { startMesh, type Mesh } from '../mesh/mesh.ts';
import type { BackendChoice } from '../model/backend/select.ts';
import { AigridError, ModelSpecSchema, type Block, type BlockQuery, type BlockSpecInput, type PolicyRecord, type PolicySpecInput, type Vdag, type VdagSpecInput, type Identity, type ModelCoverage, type ModelSpec } from '../../protocol/index.ts';
import type { BlocksAsk, PoliciesAsk, VdagsAsk } from '../mesh/signaling-client.ts';
import type { Policy, PolicySandbox } from '../../policy/index.ts';
import { withFallback } from '../../policy/hooks.ts';
import { compileVdag, type CompiledNode } from '../../plan/vdag.ts';
import { runVdag, type VdagEvent, type VdagRunResult } from './vdag-run.ts';
import { PipelineCaller, type PipelineCallOptions } from '../grid/pipeline-client.ts';
import { checkEmbeddingParams, checkTexts, embeddingResponse, pipelineModelOf } from './embeddings.ts';
import { TextStream } from './text-stream.ts';
import { registryCalls } from './registry-calls.ts';
import { creditCalls } from './credits-calls.ts';
import { Contribution } from './contribution.ts';
import type { CheckpointOpener } from '../model/checkpoint/opener.ts';
import { ModelClient } from './model-client.ts';
import { replyId, streamReply, wholeReply, type ReplyKind, type StreamEvent } from './replies.ts';
import { checkPrompt, fitToContext, samplingOf, textMessages } from './request.ts';
import type { VerifyOptions } from '../grid/verifier.ts';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParams,
  BlockRunResult,
  Completion,
  CreateEmbeddingResponse,
  EmbeddingCreateParams,
  CompletionChunk,
  CompletionCreateParams,
  GenerateOutput,
  GenerateParams,
  ModelInfo,
  ModelList,
  RequestOptions,
  SamplingParams,
  Stream,
} from './types.ts';

/** A vDAG's policy compiled in the sandbox, with the parameters its record gives it. */
interface VdagPolicy {
  compiled: Policy;
  parameters: unknown;
}

/** Tokens an LLM node of a vDAG generates when its input does not say (`maxTokens`). */
const VDAG_LLM_MAX_TOKENS = 64;

export interface VdagRunOptions {
  /** Each node's start and end, and the text of LLM nodes as it comes. */
  onEvent?: (event: VdagEvent) => void;
  signal?: AbortSignal;
}

export interface GridOptions {
  mesh: Mesh;
  /**
   * Joins the same network as another peer offering this much memory (for contribute()); by
   * default a sibling of `mesh` with the client's capabilities and that budget.
   */
  joinAsPeer?: (memoryBudgetMB: number, gpu?: GPU) => Promise<Mesh>;
  /** Who the peer that the default joinAsPeer joins is (default: a fresh ephemeral identity). */
  peerIdentity?: () => Promise<Identity>;
  /** Opens a model's checkpoint (tokenizer and head here; layers when contributing). */
  open: CheckpointOpener;
  /** Where the client's head runs. */
  backend: BackendChoice;
  /** The GPU to contribute with, if any (asked for on the first contribute()). */
  gpu: () => Promise<GPU | undefined>;
  /** Longest wait for progress along a route before failing over (default 30 s). */
  timeoutMs?: number;
  /** Spot-checks of the routes' work (default: 5% of sessions, more through newcomers); false: none. */
  verify?: VerifyOptions | false;
  /** Where onnxruntime-web's files are, for the pipeline blocks a contribution runs in a page. */
  pipelineWasmPaths?: string;
}

export interface ContributeOptions {
  /** Memory this peer offers the network, in MB. */
  memoryBudgetMB: number;
  /** Models to make available on the network as well (see serve()). */
  models?: (string | ModelSpec | ServeOptions)[];
  /** 'auto' (default): where there is an adapter, WebGPU or the CPU, whichever is measured faster on each assigned model's shapes. */
  backend?: BackendChoice;
}

/** serve(): where the weights are, and how the network should hold them. */
export type ServeOptions = Partial<Omit<ModelSpecOptions, 'source'>> & { source: string };

export class Grid {
  readonly mesh: Mesh;
  private readonly clients = new Map<string, Promise<ModelClient>>();
  /** The policy sandbox (QuickJS), loaded when a vDAG first runs a policy. */
  private sandbox: Promise<PolicySandbox> | undefined;
  private contribution: Contribution | null = null;
  /** Calls to pipeline blocks' replicas (made on first use). */
  private pipelineCaller: PipelineCaller | undefined;
  private closed = false;

  readonly models = {
    /** The models served on this network, with each one's layer coverage and health. */
    list: async (): Promise<ModelList> => ({ object: 'list', data: (await this.coverage()).map(modelInfo) }),
    retrieve: async (id: string): Promise<ModelInfo> => modelInfo(await this.coverageOf(id)),
  };

  /**
   * The network's block registry: blocks are the units it serves, named `<type>.<name>:<version>`
   * (see protocol/blocks.ts). Anyone who may serve creates; a block's owner or the network's owner
   * changes and deletes. Each call answers the block concerned, or rejects with the server's named
   * error (ERR_INVALID_BLOCK, ERR_UNKNOWN_BLOCK, ERR_BLOCK_EXISTS, ERR_PERMISSION_DENIED...).
   */
  readonly blocks = {
    ...registryCalls<BlockSpecInput, Block>((ask) => this.askBlocks(ask as BlocksAsk), 'block', 'uri'),
    /** Every block, or those of a URI type and carrying every tag asked. */
    list: (query?: BlockQuery): Promise<Block[]> => this.askBlocks({ op: 'list', ...(query ? { query } : {}) }),
    /**
     * Runs a whole-model pipeline block on a text or up to 64: a replica the coordinator names
     * computes them (feature-extraction: mean-pooled, normalised embeddings; text-classification:
     * every label with its score, best first), and another is asked if it fails.
     */
    run: async (uri: string, input: string | string[], options: PipelineCallOptions = {}): Promise<BlockRunResult> => {
      const texts = checkTexts(input);
      const block = await this.blocks.get(uri);
      if (block.model.kind !== 'pipeline') throw new AigridError('ERR_INVALID_ARGUMENT', `block ${uri} is a layer-split LLM: use chat.completions or generate with model ${block.model.modelId}`);
      return this.callPipeline(await pipelineModelOf(uri, block.model.task, async () => block), texts, options);
    },
  };

  /** OpenAI's embeddings, computed by a feature-extraction pipeline block of the network. */
  readonly embeddings = {
    create: async (params: EmbeddingCreateParams, options: PipelineCallOptions = {}): Promise<CreateEmbeddingResponse> => {
      const { texts, format } = checkEmbeddingParams(params);
      const modelId = await pipelineModelOf(params.model, 'feature-extraction', (uri) => this.blocks.get(uri));
      return embeddingResponse(params, format, await this.callPipeline(modelId, texts, options), texts.length);
    },
  };

  /**
   * The network's vDAGs: blocks wired into a graph (protocol/vdag.ts). A spec is compiled against
   * the network's blocks when created or updated; a bad one is refused with ERR_INVALID_VDAG naming
   * the node. Owned and kept as blocks are.
   */
  readonly vdags = {
    ...registryCalls<VdagSpecInput, Vdag>((ask) => this.askVdags(ask as VdagsAsk), 'vdag', 'id'),
    list: (): Promise<Vdag[]> => this.askVdags({ op: 'list' }),
    /**
     * Runs a vDAG here: compiled against the network's blocks now, each node run as its inputs
     * come (LLM nodes take `{ text }` or a string and give `{ text }`, streamed to `onEvent` as
     * `token` events; greedy unless the input names a temperature).
     */
    run: async (id: string, input: unknown, options: VdagRunOptions = {}): Promise<VdagRunResult> => {
      const [vdag] = await this.askVdags({ op: 'get', id });
      const { owner: _owner, createdAt: _created, updatedAt: _updated, ...spec } = vdag!;
      const dag = compileVdag(spec, await this.askBlocks({ op: 'list' }));
      const policies = new Map<string, Promise<VdagPolicy>>();
      const policy = (id: string) => {
        if (!policies.has(id)) policies.set(id, this.vdagPolicy(id));
        return policies.get(id)!;
      };
      return runVdag(dag, input, (node, value, emit) => this.runNodeWithPolicies(node, value, emit, policy, options.signal), options.onEvent, options.signal);
    },
  };

  /**
   * The network's policies: scripts defining eval(parameters, input, context) for a hook (see
   * policy/sandbox.ts). Only the network's owner creates, changes or deletes them; a vDAG node
   * names its `vdag` policies as preprocess and postprocess.
   */
  readonly policies = {
    ...registryCalls<PolicySpecInput, PolicyRecord>((ask) => this.askPolicies(ask as PoliciesAsk), 'policy', 'id'),
    list: (): Promise<PolicyRecord[]> => this.askPolicies({ op: 'list' }),
  };

  /**
   * Credits on this network (protocol/credits.ts): this key's balance with the network's mode and
   * prices; for the network's owner, other keys' balances, grants, and the mode and prices.
   */
  readonly credits = creditCalls(() => this.mesh.signaling);

  readonly chat = {
    completions: {
      create: ((params: ChatCompletionCreateParams, options?: RequestOptions) => this.chatCompletion(params, options)) as {
        (params: ChatCompletionCreateParams & { stream: true }, options?: RequestOptions): Promise<Stream<ChatCompletionChunk>>;
        (params: ChatCompletionCreateParams & { stream?: false | null }, options?: RequestOptions): Promise<ChatCompletion>;
        (params: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletion | Stream<ChatCompletionChunk>>;
      },
    },
  };

  readonly completions = {
    create: ((params: CompletionCreateParams, options?: RequestOptions) => this.textCompletion(params, options)) as {
      (params: CompletionCreateParams & { stream: true }, options?: RequestOptions): Promise<Stream<CompletionChunk>>;
      (params: CompletionCreateParams & { stream?: false | null }, options?: RequestOptions): Promise<Completion>;
      (params: CompletionCreateParams, options?: RequestOptions): Promise<Completion | Stream<CompletionChunk>>;
    },
  };

  constructor(private readonly options: GridOptions) {
    this.mesh = options.mesh;
  }

  get peerId(): string {
    return this.mesh.peerId;
  }

  get network(): string {
    return this.mesh.network;
  }

  /** Token ids in, token ids out: no chat template, no text decoding. */
  async generate(params: GenerateParams): Promise<GenerateOutput> {
    const client = await this.client(params.model);
    const prompt = typeof params.prompt === 'string' ? client.encode(checkPrompt(params.prompt)) : [...params.prompt];
    const sampling = samplingOf({ model: params.model, max_tokens: params.maxTokens, temperature: params.temperature ?? 1, top_p: params.topP, top_k: params.topK, seed: params.seed, repetition_penalty: params.repetitionPenalty });
    if (params.signal?.aborted) throw new AigridError('ERR_ABORTED', 'the request was aborted before it started');
    const result = await client.generate(prompt, {
      ...sampling,
      stopTokens: params.stopTokens ?? client.config.eosTokenIds,
      signal: params.signal ?? new AbortController().signal,
      onToken: params.onToken ?? (() => {}),
    });
    if (result.finishReason === 'abort') throw new AigridError('ERR_ABORTED', 'the request was aborted; its session was released on every peer');
    return { tokens: result.tokens, promptTokens: prompt.length, finishReason: result.finishReason, aigrid: result.info };
  }

  /**
   * Asks the network to serve a model: its spec is read from the checkpoint's config (a folder URL
   * or a Hugging Face id), or given whole. Resolves with the spec the coordinator places.
   */
  async serve(model: string | ModelSpec | ServeOptions): Promise<ModelSpec> {
    this.checkOpen();
    const spec = await this.specOf(model);
    if (!this.mesh.signaling.send({ type: 'serve', model: spec })) {
      throw new AigridError('ERR_SIGNALING_CLOSED', 'not connected to the signaling server');
    }
    return spec;
  }

  /** Stops serving a model on the network: every peer unloads it. Its server or the network's owner may. */
  async withdraw(modelId: string): Promise<void> {
    this.checkOpen();
    await this.mesh.signaling.withdraw(modelId);
  }

  /**
   * The network's policy: who may serve new models (`servers`: 'anyone' or a list of peer ids) and
   * where their weights may come from (`sources`: 'server' for the server's rule, or prefixes of
   * which one must match as well). Only the network's owner (the server's --owner, else the
   * network's first peer) may set it; what is not given stays.
   */
  async setPolicy(policy: { servers?: 'anyone' | string[]; sources?: 'server' | string[] }): Promise<void> {
    this.checkOpen();
    await this.mesh.signaling.setPolicy(policy);
  }

  /**
   * Serves layers from this tab or process: a second peer joins the network with the memory
   * budget, and the coordinator assigns it layer ranges; weights are fetched for those layers only.
   */
  async contribute(options: ContributeOptions): Promise<Contribution> {
    this.checkOpen();
    if (!(options.memoryBudgetMB > 0) || !Number.isFinite(options.memoryBudgetMB)) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `memoryBudgetMB must be a positive number, got ${options.memoryBudgetMB}`);
    }
    this.contribution?.stop();
    const backend = options.backend ?? 'auto';
    const gpu = backend === 'cpu' ? undefined : await this.options.gpu();
    if (backend === 'webgpu' && !gpu) throw new AigridError('ERR_NO_WEBGPU', 'contribute({ backend: "webgpu" }) needs a WebGPU adapter; use "auto" or "cpu"');
    const contribution = new Contribution({
      mesh: await (this.options.joinAsPeer ?? ((mb) => this.joinSibling(mb)))(options.memoryBudgetMB, gpu),
      memoryBudgetMB: options.memoryBudgetMB,
      open: this.options.open,
      backend: gpu ? backend : 'cpu',
      gpu,
      ...(this.options.pipelineWasmPaths ? { pipelineWasmPaths: this.options.pipelineWasmPaths } : {}),
    });
    this.contribution = contribution;
    for (const model of options.models ?? []) await this.serve(model);
    return contribution;
  }

  /** The contribution running now, if any. */
  get contributing(): Contribution | null {
    return this.contribution?.active ? this.contribution : null;
  }

  /** Leaves the network: stops contributing, ends every session, closes the connections. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.contribution?.stop();
    this.pipelineCaller?.close();
    for (const client of this.clients.values()) client.then((c) => c.close(), () => {});
    this.clients.clear();
    this.mesh.close();
  }

  /**
   * Lets go of the client side of a model (tokenizer, head, routes) kept for requests, so the next
   * request opens it afresh from the network's current spec (after the model's spec changed, or to
   * free what an unused model holds). It is closed once `drained` settles: requests still running
   * on it finish first.
   */
  releaseModel(modelId: string, drained: Promise<unknown> = Promise.resolve()): void {
    const client = this.clients.get(modelId);
    if (!client) return;
    this.clients.delete(modelId);
    const close = () => client.then((c) => c.close(), () => {});
    drained.then(close, close);
  }

  private async chatCompletion(params: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletion | Stream<ChatCompletionChunk>> {
    const sampling = samplingOf(params);
    const messages = textMessages(params.messages);
    const client = await this.client(params.model);
    const prompt = client.encodeChat(messages);
    return this.reply('chat', client, prompt, params, sampling, options);
  }

  private async textCompletion(params: CompletionCreateParams, options?: RequestOptions): Promise<Completion | Stream<CompletionChunk>> {
    const sampling = samplingOf(params);
    const text = checkPrompt(params.prompt);
    const client = await this.client(params.model);
    return this.reply('text', client, client.encode(text), params, sampling, options);
  }

  private async reply(kind: ReplyKind, client: ModelClient, prompt: number[], params: SamplingParams, sampling: ReturnType<typeof samplingOf>, options?: RequestOptions): Promise<never> {
    const signal = options?.signal;
    if (signal?.aborted) throw new AigridError('ERR_ABORTED', 'the request was aborted before it started');
    sampling = fitToContext(sampling, prompt.length, client.config.maxPositions);
    const req = { kind, client, model: params.model, prompt, sampling, includeUsage: Boolean(params.stream_options?.include_usage), signal };
    if (!params.stream) {
      const r = await wholeReply(req);
      const base = { id: r.id, created: r.created, model: params.model, usage: r.usage, system_fingerprint: FINGERPRINT, aigrid: r.info };
      if (kind === 'chat') {
        return { ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: r.text, refusal: null }, logprobs: null, finish_reason: r.finishReason }] } satisfies ChatCompletion as never;
      }
      return { ...base, object: 'text_completion', choices: [{ index: 0, text: r.text, logprobs: null, finish_reason: r.finishReason }] } satisfies Completion as never;
    }
    const head = { id: replyId(kind), created: Math.floor(Date.now() / 1000), model: params.model, system_fingerprint: FINGERPRINT };
    const usage = req.includeUsage ? { usage: null } : {};
    if (kind === 'chat') {
      const chunk = (delta: ChatCompletionChunk['choices'][0]['delta'], finish: ChatCompletionChunk['choices'][0]['finish_reason'] = null): ChatCompletionChunk => ({
        ...head, object: 'chat.completion.chunk', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...usage,
      });
      return streamReply<ChatCompletionChunk>(req, (e) => {
        if (e.type === 'start') return [chunk({ role: 'assistant', content: '' })];
        if (e.type === 'text') return [chunk({ content: e.text })];
        return endChunks(req.includeUsage, { ...chunk({}, e.finishReason), aigrid: e.info }, { ...head, object: 'chat.completion.chunk', choices: [] }, e);
      }) as never;
    }
    const chunk = (text: string, finish: CompletionChunk['choices'][0]['finish_reason'] = null): CompletionChunk => ({
      ...head, object: 'text_completion', choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], ...usage,
    });
    return streamReply<CompletionChunk>(req, (e) => {
      if (e.type === 'start') return [];
      if (e.type === 'text') return [chunk(e.text)];
      return endChunks(req.includeUsage, { ...chunk('', e.finishReason), aigrid: e.info }, { ...head, object: 'text_completion', choices: [] }, e);
    }) as never;
  }

  /** The client side of a model, loaded once (tokenizer, head, chain) and shared by requests. */
  private client(modelId: string): Promise<ModelClient> {
    this.checkOpen();
    let client = this.clients.get(modelId);
    if (!client) {
      client = this.coverageOf(modelId).then((coverage) => {
        if (coverage.model.pipeline) throw new AigridError('ERR_INVALID_ARGUMENT', `${modelId} is a ${coverage.model.pipeline.task} pipeline block, not a language model: use embeddings.create or blocks.run`);
        return ModelClient.open({ mesh: this.mesh, spec: coverage.model, open: this.options.open, backend: this.options.backend, timeoutMs: this.options.timeoutMs, verify: this.options.verify });
      });
      this.clients.set(modelId, client);
      client.catch(() => this.clients.delete(modelId));
    }
    return client;
  }

  private async coverage(): Promise<ModelCoverage[]> {
    this.checkOpen();
    return this.mesh.signaling.listModels();
  }

  private async coverageOf(modelId: string): Promise<ModelCoverage> {
    const all = await this.coverage();
    const found = all.find((m) => m.model.modelId === modelId);
    if (!found) {
      const served = all.map((m) => m.model.modelId).join(', ') || 'none';
      throw new AigridError('ERR_UNKNOWN_MODEL', `network ${this.network} serves no model ${JSON.stringify(modelId)} (served: ${served})`);
    }
    return found;
  }

  private async specOf(model: string | ModelSpec | ServeOptions): Promise<ModelSpec> {
    if (typeof model === 'object' && 'numLayers' in model) {
      const parsed = ModelSpecSchema.safeParse(model);
      if (!parsed.success) throw new AigridError('ERR_INVALID_ARGUMENT', `model spec: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
      return parsed.data;
    }
    const options: ServeOptions = typeof model === 'string' ? { source: model } : model;
    return modelSpecFromCheckpoint(await this.options.open(options), options);
  }

  private async joinSibling(memoryBudgetMB: number): Promise<Mesh> {
    return startMesh(this.mesh.sibling({ ...this.mesh.signaling.capabilities, memoryBudgetMB }, await this.options.peerIdentity?.()));
  }

  /** A `vdag` policy of the network, compiled in this grid's sandbox (loaded on first use). */
  private async vdagPolicy(id: string): Promise<VdagPolicy> {
    const record = await this.policies.get(id);
    if (record.hook !== 'vdag') throw new AigridError('ERR_POLICY_INVALID', `policy ${id} is for the ${record.hook} hook, not vdag`);
    this.sandbox ??= import('../../policy/index.ts').then((m) => m.PolicySandbox.create());
    return { compiled: (await this.sandbox).compile(record.code, { name: id }), parameters: record.parameters ?? null };
  }

  /**
   * A node with its policies: the preprocess policy rewrites its input, the postprocess one its
   * output; a policy that fails leaves the value as it was (the default) and says so in an event.
   */
  private async runNodeWithPolicies(node: CompiledNode, input: unknown, emit: (event: VdagEvent) => void, policy: (id: string) => Promise<VdagPolicy>, signal?: AbortSignal): Promise<unknown> {
    const { preprocess, postprocess } = node.node;
    const apply = async (id: string | undefined, value: unknown, phase: 'pre' | 'post') => {
      if (id === undefined) return value;
      const { compiled, parameters } = await policy(id);
      const context = { node: node.node.id, block: node.block.uri, phase };
      return withFallback(
        compiled,
        (p) => p.run(parameters, value, context),
        () => value,
        (error) => emit({ type: 'policy-failure', node: node.node.id, policy: id, code: error.code, message: error.message }),
      );
    };
    const output = await this.runNode(node, await apply(preprocess, input, 'pre'), emit, signal);
    return apply(postprocess, output, 'post');
  }

  private callPipeline(modelId: string, texts: string[], options: PipelineCallOptions): Promise<BlockRunResult> {
    this.checkOpen();
    this.pipelineCaller ??= new PipelineCaller(this.mesh);
    return this.pipelineCaller.call(modelId, texts, options);
  }

  /**
   * A pipeline node: `{ text }` or a string in; `{ embedding }` (feature-extraction) or
   * `{ label, score, labels }` (text-classification) out.
   */
  private async runPipelineNode(block: Block & { model: { kind: 'pipeline' } }, input: unknown, signal?: AbortSignal): Promise<unknown> {
    const text = typeof input === 'string' ? input : (input as { text?: unknown } | null)?.text;
    if (typeof text !== 'string') throw new AigridError('ERR_INVALID_ARGUMENT', `a ${block.model.task} node takes a string or { text: string }, got ${JSON.stringify(input)?.slice(0, 200)}`);
    const result = await this.callPipeline(await pipelineModelOf(block.uri, block.model.task, async () => block), [text], signal ? { signal } : {});
    if (block.model.task === 'feature-extraction') return { embedding: result.embeddings?.[0] ?? [] };
    const labels = result.labels?.[0] ?? [];
    return { label: labels[0]?.label ?? null, score: labels[0]?.score ?? 0, labels };
  }

  /** One vDAG node's block on its input. */
  private async runNode(node: CompiledNode, input: unknown, emit: (event: VdagEvent) => void, signal?: AbortSignal): Promise<unknown> {
    const { block } = node;
    if (block.model.kind === 'pipeline') return this.runPipelineNode(block as Block & { model: { kind: 'pipeline' } }, input, signal);
    const given = typeof input === 'string' ? { text: input } : (input as { text?: unknown; maxTokens?: unknown; temperature?: unknown } | null);
    if (!given || typeof given.text !== 'string') throw new AigridError('ERR_INVALID_ARGUMENT', `an LLM node takes a string or { text: string }, got ${JSON.stringify(input)?.slice(0, 200)}`);
    const model = block.model.modelId;
    const client = await this.client(model);
    const stream = new TextStream((ids) => client.decode(ids));
    const say = (text: string) => text && emit({ type: 'token', node: node.node.id, text });
    await this.generate({
      model,
      prompt: given.text,
      maxTokens: typeof given.maxTokens === 'number' ? given.maxTokens : VDAG_LLM_MAX_TOKENS,
      temperature: typeof given.temperature === 'number' ? given.temperature : 0,
      onToken: (token) => say(stream.push(token).text),
      ...(signal ? { signal } : {}),
    });
    say(stream.flush());
    return { text: stream.text };
  }

  private askPolicies(ask: PoliciesAsk): Promise<PolicyRecord[]> {
    this.checkOpen();
    return this.mesh.signaling.requestPolicies(ask);
  }

  private askVdags(ask: VdagsAsk): Promise<Vdag[]> {
    this.checkOpen();
    return this.mesh.signaling.requestVdags(ask);
  }

  private askBlocks(ask: BlocksAsk): Promise<Block[]> {
    this.checkOpen();
    return this.mesh.signaling.requestBlocks(ask);
  }

  private checkOpen(): void {
    if (this.closed) throw new AigridError('ERR_PEER_CLOSED', 'this grid connection was closed; connect() again');
  }
}

const FINGERPRINT = 'aigrid';

/** The finishing chunk, then (when asked for) OpenAI's usage chunk with no choices. */
function endChunks<T>(includeUsage: boolean, last: T, empty: T, end: Extract<StreamEvent, { type: 'end' }>): T[] {
  return includeUsage ? [last, { ...empty, usage: end.usage }] : [last];
}

export function modelInfo(coverage: ModelCoverage): ModelInfo {
  const { model, assigned, ready } = coverage;
  const minReady = Math.min(...ready);
  const health = minReady >= model.replication ? 'ready' : minReady >= 1 ? 'under-replicated' : assigned.some((a) => a > 0) ? 'loading' : 'unavailable';
  return {
    id: model.modelId,
    object: 'model',
    created: 0,
    owned_by: 'aigrid',
    health,
    coverage: { layers: model.numLayers, replication: model.replication, assigned: [...assigned], ready: [...ready] },
    light: Boolean(model.light),
    spec: model,
  };
}
