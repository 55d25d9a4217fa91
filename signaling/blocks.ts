// The block registry of each network: create, update, delete, get and list blocks
// (protocol/blocks.ts), checked here: the spec's fields by its schema, its input and output
// schemas as JSON Schema (Ajv's meta-schema check; nothing is compiled or cached per block),
// replicas in order, size and count bounded. Anyone the network lets serve may create a block;
// its owner or the network's owner may change or delete it. Blocks live as long as the network's
// rules: through a restart (the data folder) and until its last member leaves.
import { Ajv } from 'ajv';
import {
  AigridError,
  blockMatches,
  BlockSpecSchema,
  BlockUriSchema,
  MAX_BLOCK_SPEC_BYTES,
  MAX_BLOCKS_PER_NETWORK,
  type Block,
  type BlockQuery,
  type ClientMessage,
  type ServerMessage,
} from '../protocol/index.ts';
import type { Governance } from './governance.ts';

type BlocksRequest = Extract<ClientMessage, { type: 'blocks' }>;
type Reply = (message: ServerMessage) => void;

/** One Ajv for the meta-schema checks: validateSchema compiles nothing of the block's. */
const ajv = new Ajv({ strict: false, validateSchema: true });

/** The spec checked, or ERR_INVALID_BLOCK naming the field that is wrong. */
export function checkBlockSpec(value: unknown): Omit<Block, 'owner' | 'createdAt' | 'updatedAt'> {
  const bytes = JSON.stringify(value ?? null).length;
  if (bytes > MAX_BLOCK_SPEC_BYTES) throw new AigridError('ERR_INVALID_BLOCK', `the block spec is ${bytes} bytes of JSON; at most ${MAX_BLOCK_SPEC_BYTES}`);
  const parsed = BlockSpecSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.length ? issue.path.join('.') : 'block';
    throw new AigridError('ERR_INVALID_BLOCK', `${field}: ${issue.message}`);
  }
  const spec = parsed.data;
  if (spec.minReplicas > spec.maxReplicas) {
    throw new AigridError('ERR_INVALID_BLOCK', `minReplicas (${spec.minReplicas}) is above maxReplicas (${spec.maxReplicas})`);
  }
  for (const field of ['inputSchema', 'outputSchema'] as const) {
    if (!ajv.validateSchema(spec[field])) {
      const [first] = ajv.errors ?? [];
      throw new AigridError('ERR_INVALID_BLOCK', `${field} is not a JSON Schema: ${first ? `${first.instancePath || '/'} ${first.message}` : 'refused'}`);
    }
  }
  return { ...spec, tags: [...new Set(spec.tags)] };
}

export class BlockRegistry {
  private readonly byNetwork = new Map<string, Map<string, Block>>();

  constructor(
    private readonly governance: Governance,
    restored: Record<string, Block[]> = {},
    private readonly onChange: () => void = () => {},
    private readonly now: () => number = Date.now,
  ) {
    for (const [network, blocks] of Object.entries(restored)) {
      if (blocks.length) this.byNetwork.set(network, new Map(blocks.map((b) => [b.uri, b])));
    }
  }

  /** Every network's blocks, as the data folder keeps them. */
  all(): Record<string, Block[]> {
    return Object.fromEntries([...this.byNetwork].map(([network, blocks]) => [network, [...blocks.values()]]));
  }

  list(network: string, query?: BlockQuery): Block[] {
    return [...(this.byNetwork.get(network)?.values() ?? [])].filter((b) => blockMatches(b, query));
  }

  get(network: string, uri: string): Block {
    const block = this.byNetwork.get(network)?.get(uri);
    if (!block) throw new AigridError('ERR_UNKNOWN_BLOCK', `network ${network} has no block ${uri}`);
    return block;
  }

  create(network: string, peerId: string, value: unknown): Block {
    const spec = checkBlockSpec(value);
    if (!this.governance.mayServe(network, peerId)) {
      throw new AigridError('ERR_PERMISSION_DENIED', `${peerId} may not create blocks on network ${network}: its owner lists who may serve`);
    }
    let blocks = this.byNetwork.get(network);
    if (blocks?.has(spec.uri)) throw new AigridError('ERR_BLOCK_EXISTS', `network ${network} has a block ${spec.uri} already (owned by ${blocks.get(spec.uri)!.owner})`);
    if ((blocks?.size ?? 0) >= MAX_BLOCKS_PER_NETWORK) {
      throw new AigridError('ERR_REGISTRY_FULL', `network ${network} holds ${MAX_BLOCKS_PER_NETWORK} blocks, the most it takes`);
    }
    if (!blocks) this.byNetwork.set(network, (blocks = new Map()));
    const at = this.now();
    const block: Block = { ...spec, owner: peerId, createdAt: at, updatedAt: at };
    blocks.set(block.uri, block);
    this.onChange();
    return block;
  }

  update(network: string, peerId: string, value: unknown): Block {
    const spec = checkBlockSpec(value);
    const old = this.mayChange(network, peerId, spec.uri);
    const block: Block = { ...spec, owner: old.owner, createdAt: old.createdAt, updatedAt: Math.max(this.now(), old.updatedAt) };
    this.byNetwork.get(network)!.set(block.uri, block);
    this.onChange();
    return block;
  }

  delete(network: string, peerId: string, uri: string): Block {
    const old = this.mayChange(network, peerId, uri);
    const blocks = this.byNetwork.get(network)!;
    blocks.delete(uri);
    if (blocks.size === 0) this.byNetwork.delete(network);
    this.onChange();
    return old;
  }

  /** The network's last member left (with its rules). */
  forget(network: string): void {
    if (this.byNetwork.delete(network)) this.onChange();
  }

  /** Answers one `blocks` request: the blocks concerned, or the error naming why not. */
  handle(network: string, peerId: string, msg: BlocksRequest, reply: Reply): void {
    const answer = (blocks: Block[]) => reply({ type: 'blocks', requestId: msg.requestId, blocks });
    try {
      switch (msg.op) {
        case 'create':
          return answer([this.create(network, peerId, msg.block)]);
        case 'update':
          return answer([this.update(network, peerId, msg.block)]);
        case 'delete':
          return answer([this.delete(network, peerId, msg.uri!)]);
        case 'get':
          return answer([this.get(network, msg.uri!)]);
        case 'list':
          return answer(this.list(network, msg.query));
      }
    } catch (err) {
      if (!(err instanceof AigridError)) throw err;
      reply({ type: 'error', code: err.code, message: err.message, ref: 'blocks', requestId: msg.requestId });
    }
  }

  private mayChange(network: string, peerId: string, uri: string): Block {
    BlockUriSchema.parse(uri);
    const old = this.get(network, uri);
    if (!this.governance.mayChange(network, peerId, old.owner)) {
      throw new AigridError('ERR_PERMISSION_DENIED', `block ${uri} on network ${network} belongs to ${old.owner}; only it or the network's owner may change it`);
    }
    return old;
  }
}
