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
import { answerRegistry, OwnedRecords } from './owned-records.ts';

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

type BlockSpec = Omit<Block, 'owner' | 'createdAt' | 'updatedAt'>;

export class BlockRegistry {
  readonly records: OwnedRecords<BlockSpec, Block>;

  constructor(governance: Governance, restored: Record<string, Block[]> = {}, onChange?: () => void, now?: () => number) {
    this.records = new OwnedRecords<BlockSpec, Block>(governance, {
      noun: 'block',
      key: (b) => b.uri,
      check: (value) => checkBlockSpec(value),
      max: MAX_BLOCKS_PER_NETWORK,
      exists: 'ERR_BLOCK_EXISTS',
      unknown: 'ERR_UNKNOWN_BLOCK',
      restored,
      ...(onChange ? { onChange } : {}),
      ...(now ? { now } : {}),
    });
  }

  all(): Record<string, Block[]> {
    return this.records.all();
  }

  list(network: string, query?: BlockQuery): Block[] {
    return this.records.list(network).filter((b) => blockMatches(b, query));
  }

  get(network: string, uri: string): Block {
    return this.records.get(network, uri);
  }

  create(network: string, peerId: string, value: unknown): Block {
    return this.records.create(network, peerId, value);
  }

  update(network: string, peerId: string, value: unknown): Block {
    return this.records.update(network, peerId, value);
  }

  delete(network: string, peerId: string, uri: string): Block {
    return this.records.delete(network, peerId, BlockUriSchema.parse(uri));
  }

  forget(network: string): void {
    this.records.forget(network);
  }

  load(network: string, records: readonly Block[]): void {
    this.records.load(network, records);
  }

  /** Answers one `blocks` request: the blocks concerned, or the error naming why not. */
  handle(network: string, peerId: string, msg: BlocksRequest, reply: Reply): void {
    const fields = { type: 'blocks', record: 'block', key: 'uri', parseKey: (uri: unknown) => BlockUriSchema.parse(uri) } as const;
    answerRegistry(this.records, fields, network, peerId, msg, reply, () => this.list(network, msg.query));
  }
}
