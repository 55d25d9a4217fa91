// One served model as a client uses it: its tokenizer, and routes from the coordinator that run
// either the layers around the client's own head (RemoteChain) or, for a model served for light
// clients, the whole model (RemoteModel: token ids in, logits out; the client loads no weights).
// generate() runs one generation as a session and releases it on every hop when it ends, fails or
// is aborted, so aborted work stops along the whole route.
import { meshRoutes, RemoteChain, RemoteModel, type FailoverEvent, type RouteOptions, type VerifyOptions } from '../grid/index.ts';
import type { Mesh } from '../mesh/mesh.ts';
import type { CheckpointOpener } from '../model/checkpoint/opener.ts';
import type { BackendChoice } from '../model/backend/select.ts';
import type { ModelConfig } from '../model/config.ts';
import { generate, withHead, type TokenModel } from '../model/generate.ts';
import { Head } from '../model/head.ts';
import { readConfig } from '../model/shard.ts';
import { Tokenizer } from '../model/tokenizer.ts';
import { AigridError, randomSessionId, type ModelSpec } from '../../protocol/index.ts';
import type { SamplingValues } from './request.ts';
import type { GridReplyInfo } from './types.ts';

export interface ModelClientOptions {
  mesh: Mesh;
  spec: ModelSpec;
  open: CheckpointOpener;
  /** Where the head runs (default 'auto': WebGPU when there is an adapter). */
  backend?: BackendChoice;
  gpu?: GPU;
  /** Longest wait for progress along a route before it is failed over (default 30 s). */
  timeoutMs?: number;
  /** Spot-checks of finished sessions (verdicts go to the coordinator); false: none. */
  verify?: VerifyOptions | false;
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
    /** The model a generation steps through, and what to close with it. */
    private readonly model: TokenModel,
    private readonly route: RemoteChain | RemoteModel,
    private readonly head: Head | null,
    private readonly failovers: Map<string, number>,
  ) {
    this.spec = spec;
  }

  static async open(options: ModelClientOptions): Promise<ModelClient> {
    const { mesh, spec } = options;
    const reader = await options.open(spec);
    const config = readConfig(reader);
    const tokenizer = await Tokenizer.fromReader(reader);
    const failovers = new Map<string, number>();
    const routeOptions: RouteOptions = {
      mesh,
      modelId: spec.modelId,
      numLayers: spec.numLayers,
      hiddenSize: spec.hiddenSize,
      routes: meshRoutes(mesh, spec.modelId),
      timeoutMs: options.timeoutMs,
      onFailover: (e: FailoverEvent) => {
        failovers.set(e.sessionId, (failovers.get(e.sessionId) ?? 0) + 1);
        // A hop that stalled or refused a frame it should have taken counts against its key.
        if (e.blame && options.verify !== false) mesh.signaling.send({ type: 'verdict', modelId: spec.modelId, verdicts: [{ peerId: e.blame, result: 'timeout' }] });
      },
      ...(options.verify === false
        ? {}
        : { verify: { ...options.verify, report: (verdicts) => void mesh.signaling.send({ type: 'verdict', modelId: spec.modelId, verdicts }) } }),
    };
    if (spec.light) {
      const remote = new RemoteModel({ ...routeOptions, vocabSize: config.vocabSize });
      return new ModelClient(spec, tokenizer, config, remote.step, remote, null, failovers);
    }
    const head = await Head.load(reader, { backend: options.backend ?? 'auto', gpu: options.gpu });
    const chain = new RemoteChain(routeOptions);
    return new ModelClient(spec, tokenizer, config, withHead(head, chain.layers), chain, head, failovers);
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
    let finished = false;
    try {
      const result = await generate(this.model, prompt, {
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
        route: this.route.routeOf(sessionId) ?? [], // the last route, the one that finished it
        tokensPerSecond: result.tokens.length > 1 && decodeS > 0 ? round((result.tokens.length - 1) / decodeS) : 0,
        failovers: this.failovers.get(sessionId) ?? 0,
        timeToFirstTokenS: firstAt ? round((firstAt - started) / 1000) : 0,
      };
      finished = result.finishReason !== 'abort';
      return { tokens: result.tokens, finishReason: result.finishReason, info };
    } finally {
      this.failovers.delete(sessionId);
      this.route.release(sessionId, finished); // an aborted or failed generation is not checked
    }
  }

  close(): void {
    this.route.close();
    this.head?.destroy();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
