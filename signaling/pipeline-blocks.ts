// A pipeline block is served as it is saved: creating or updating one has the coordinator serve it
// as a model of one layer under its reserved id (protocol/pipelines.ts), deleting it, or turning it
// into an LLM block, withdraws that model. Its weights' source is checked before the block is
// kept, so a block that could never be served is refused whole, by name.
import { PIPELINE_MODEL_PREFIX, pipelineModelId, type Block, type ClientMessage, type ModelSpec, type ServerMessage } from '../protocol/index.ts';
import { checkBlockSpec, type BlockRegistry } from './blocks.ts';
import type { Governance } from './governance.ts';
import { checkSource, type SourcePolicy } from './sources.ts';

type BlocksRequest = Extract<ClientMessage, { type: 'blocks' }>;
type Reply = (message: ServerMessage) => void;

const MB = 1024 * 1024;

/** The model the coordinator serves for a pipeline block; undefined for an LLM block. */
export function pipelineModelSpec(block: Pick<Block, 'uri' | 'model' | 'minReplicas'>): ModelSpec | undefined {
  if (block.model.kind !== 'pipeline') return undefined;
  const { task, model, revision, memoryMB } = block.model;
  return {
    modelId: pipelineModelId(block.uri),
    source: model,
    ...(revision !== undefined ? { revision } : {}),
    numLayers: 1,
    hiddenSize: 1,
    layerBytes: memoryMB * MB,
    weightDtype: 'f32',
    replication: block.minReplicas,
    pipeline: { task },
  };
}

/** Why a `serve` or `withdraw` may not name this model id (a pipeline block's own), if it may not. */
export function reservedModelId(modelId: string): string | undefined {
  if (!modelId.startsWith(PIPELINE_MODEL_PREFIX)) return undefined;
  return `model ids under ${PIPELINE_MODEL_PREFIX} belong to pipeline blocks: create, update or delete the block instead`;
}

export interface PipelineServing {
  serve(network: string, peerId: string, spec: ModelSpec, reply: Reply): Promise<void>;
  withdraw(network: string, peerId: string, modelId: string, reply: Reply): Promise<void>;
}

export class PipelineBlocks {
  constructor(
    private readonly registry: BlockRegistry,
    private readonly governance: Governance,
    private readonly sources: SourcePolicy,
    private readonly serving: PipelineServing,
  ) {}

  /** Answers a `blocks` request, then serves or withdraws the pipeline block it changed. */
  handle(network: string, peerId: string, msg: BlocksRequest, reply: Reply): void {
    if (msg.op === 'get' || msg.op === 'list') return this.registry.handle(network, peerId, msg, reply);
    const refused = this.refusedSource(network, msg);
    if (refused) return reply({ type: 'error', code: 'ERR_INVALID_BLOCK', message: refused, ref: 'blocks', requestId: msg.requestId });
    let before: ModelSpec | undefined;
    try {
      const uri = msg.op === 'delete' ? msg.uri : (msg.block as { uri?: unknown } | undefined)?.uri;
      if (msg.op !== 'create' && typeof uri === 'string') before = pipelineModelSpec(this.registry.get(network, uri));
    } catch {
      // No such block: the registry names the error.
    }
    this.registry.handle(network, peerId, msg, (answer) => {
      reply(answer);
      if (answer.type !== 'blocks') return;
      const after = msg.op === 'delete' ? undefined : pipelineModelSpec(answer.blocks[0]!);
      // What the coordinator answers (placement short of memory, the model cap) goes to the asker.
      if (after) void this.serving.serve(network, peerId, after, reply);
      else if (before) void this.serving.withdraw(network, peerId, before.modelId, reply);
    });
  }

  /** Why a pipeline block's weights may not be loaded from where it says, if they may not. */
  private refusedSource(network: string, msg: BlocksRequest): string | undefined {
    if (msg.op !== 'create' && msg.op !== 'update') return undefined;
    let spec: ModelSpec | undefined;
    try {
      spec = pipelineModelSpec(checkBlockSpec(msg.block));
    } catch {
      return undefined; // the registry names what is wrong with the spec
    }
    if (!spec) return undefined;
    try {
      checkSource(spec, this.sources);
    } catch (err) {
      return `model.model: ${(err as Error).message}`;
    }
    const narrowed = this.governance.refusesSource(network, spec.source);
    return narrowed ? `model.model: weights from ${JSON.stringify(spec.source.slice(0, 200))} are not allowed on network ${network}: ${narrowed}` : undefined;
  }
}
