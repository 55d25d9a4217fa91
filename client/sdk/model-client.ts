// One served model as a client uses it: its tokenizer, the head (embedding, final norm, LM head)
// unless the model serves light clients, and a RemoteChain over routes from the coordinator.
// generate() runs one generation as a session and releases it on every hop when it ends, fails or
// is aborted, so aborted work stops along the whole route.
import { lightHead, meshRoutes, RemoteChain, type FailoverEvent } from '../grid/index.ts';
import type { Mesh } from '../mesh/mesh.ts';
import type { CheckpointReader } from '../model/checkpoint/reader.ts';
import type { BackendChoice } from '../model/backend/select.ts';
import type { ModelConfig } from '../model/config.ts';
import { generate, type HeadLike } from '../model/generate.ts';
import { Head } from '../model/head.ts';
import { readConfig } from '../model/shard.ts';
import { Tokenizer } from '../model/tokenizer.ts';
import { AigridError, randomSessionId, type ModelSpec } from '../../protocol/index.ts';
import type { SamplingValues } from './request.ts';
import type { GridReplyInfo } from './types.ts';

/** Where a model's weights are: all a checkpoint opener needs of its spec. */
export type ModelSource = Pick<ModelSpec, 'source' | 'baseUrl' | 'revision'>;

/** Opens a model's checkpoint (the client's tokenizer and head; a contribution's layers). */
export type CheckpointOpener = (model: ModelSource, signal?: AbortSignal) => Promise<CheckpointReader>;

export interface ModelClientOptions {
  mesh: Mesh;
  spec: ModelSpec;
  open: CheckpointOpener;
  /** Where the head runs (default 'auto': WebGPU when there is an adapter). */
  backend?: BackendChoice;
  gpu?: GPU;
  /** Longest wait for progress along a route before it is failed over (default 30 s). */
  timeoutMs?: number;
}

export interface RunOptions extends SamplingValues {
  stopTokens: readonly number[];
  signal: AbortSignal;
  onToken: (token: number, step: number) => void;
}

export interface RunResult {
  tokens: number[];
  /** 'abort' when the signal ended it (a stop string, or the caller). */
  finishReason: 'stop' | 'length' | 'abort';
  info: GridReplyInfo;
}

export class ModelClient {
  readonly spec: ModelSpec;
  private constructor(
    spec: ModelSpec,
    readonly tokenizer: Tokenizer,
    readonly config: ModelConfig,
    private readonly head: HeadLike & { destroy?(): void },
    private readonly chain: RemoteChain,
    private readonly failovers: Map<string, number>,
  ) {
    this.spec = spec;
  }

  static async open(options: ModelClientOptions): Promise<ModelClient> {
    const { mesh, spec } = options;
    const reader = await options.open(spec);
    const config = readConfig(reader);
    const tokenizer = await Tokenizer.fromReader(reader);
    const head = spec.light ? lightHead : await Head.load(reader, { backend: options.backend ?? 'auto', gpu: options.gpu });
    const failovers = new Map<string, number>();
    const chain = new RemoteChain({
      mesh,
      modelId: spec.modelId,
      numLayers: spec.numLayers,
      hiddenSize: spec.hiddenSize,
      routes: meshRoutes(mesh, spec.modelId),
      timeoutMs: options.timeoutMs,
      light: spec.light ? { vocabSize: config.vocabSize } : undefined,
      onFailover: (e: FailoverEvent) => failovers.set(e.sessionId, (failovers.get(e.sessionId) ?? 0) + 1),
    });
    return new ModelClient(spec, tokenizer, config, head, chain, failovers);
  }

  /** Ids of a chat rendered with the model's template, ready for the assistant's reply. */
  encodeChat(messages: { role: string; content: string }[]): number[] {
    return this.tokenizer.encodeChat(messages);
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text);
  }

  decode(ids: number[]): string {
    return this.tokenizer.decode(ids, true);
  }

  async generate(prompt: readonly number[], options: RunOptions): Promise<RunResult> {
    if (prompt.length + options.maxTokens > this.config.maxPositions) {
      throw new AigridError('ERR_INVALID_ARGUMENT', `prompt (${prompt.length} tokens) + max_tokens (${options.maxTokens}) exceed the model's context of ${this.config.maxPositions}; shorten one`);
    }
    const sessionId = randomSessionId();
    const started = performance.now();
    let firstAt = 0;
    let lastAt = 0;
    try {
      const result = await generate(this.head, this.chain.layers, prompt, {
        maxTokens: options.maxTokens,
        temperature: options.temperature,
        topK: options.topK,
        topP: options.topP,
        seed: options.seed,
        repetitionPenalty: options.repetitionPenalty,
        stopTokens: options.stopTokens,
        sessionId,
        signal: options.signal,
        onToken: (token, step) => {
          lastAt = performance.now();
          if (step === 0) firstAt = lastAt;
          options.onToken(token, step);
        },
      });
      const decodeS = (lastAt - firstAt) / 1000;
      const info: GridReplyInfo = {
        route: this.chain.routeOf(sessionId) ?? [], // the last route, the one that finished it
        tokensPerSecond: result.tokens.length > 1 && decodeS > 0 ? round((result.tokens.length - 1) / decodeS) : 0,
        failovers: this.failovers.get(sessionId) ?? 0,
        timeToFirstTokenS: firstAt ? round((firstAt - started) / 1000) : 0,
      };
      return { tokens: result.tokens, finishReason: result.finishReason, info };
    } finally {
      this.failovers.delete(sessionId);
      this.chain.release(sessionId);
    }
  }

  close(): void {
    this.chain.close();
    this.head.destroy?.();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
