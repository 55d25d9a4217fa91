// The block and vDAG registries: each bad block spec is refused with ERR_INVALID_BLOCK naming its
// field; over a real signaling server and the SDK, blocks are created, listed by type and tags, got,
// updated and deleted by who may; others are refused by name; the count is bounded; vDAGs are
// compiled against the blocks (a bad one is refused naming the node); and a restart on the same
// data folder keeps every block and vDAG.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCKS_PER_NETWORK, type BlockSpecInput } from '../protocol/index.ts';
import { connect, type Grid } from '../client/sdk/node.ts';
import { BlockRegistry, checkBlockSpec } from '../signaling/blocks.ts';
import { Governance } from '../signaling/governance.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { testIdentity } from './helpers/identities.ts';
import { TestClient } from './helpers/ws-client.ts';

const EMBEDDER: BlockSpecInput = {
  uri: 'embedding.minilm:1',
  model: { kind: 'pipeline', task: 'feature-extraction', model: 'Xenova/all-MiniLM-L6-v2' },
  tags: ['task=embedding', 'small'],
  inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] },
  outputSchema: { type: 'array', items: { type: 'number' } },
};
const CHAT: BlockSpecInput = {
  uri: 'llm.tiny-llama:0.1',
  model: { kind: 'llm', modelId: 'tiny-llama' },
  tags: ['task=chat'],
  minReplicas: 2,
  maxReplicas: 3,
  inputSchema: { type: 'object', properties: { prompt: { type: 'string' } } },
  outputSchema: { type: 'object', properties: { text: { type: 'string' } } },
};

/** The message of checkBlockSpec's refusal, which must be ERR_INVALID_BLOCK. */
function refusal(value: unknown): string {
  try {
    checkBlockSpec(value);
  } catch (err) {
    expect(err).toMatchObject({ code: 'ERR_INVALID_BLOCK' });
    return (err as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(value)}`);
}

describe('a block spec', () => {
  it('is taken with its defaults filled in', () => {
    expect(checkBlockSpec({ ...EMBEDDER, tags: ['small', 'small'] })).toMatchObject({ uri: 'embedding.minilm:1', tags: ['small'], minReplicas: 1, maxReplicas: 4 });
  });

  it('is refused with ERR_INVALID_BLOCK naming the field that is wrong', () => {
    expect(refusal({ ...EMBEDDER, uri: 'minilm' })).toMatch(/^uri: a block URI is <type>\.<name>:<version>/);
    expect(refusal({ ...EMBEDDER, uri: 'Embedding.minilm:1' })).toMatch(/^uri:/);
    expect(refusal({ ...EMBEDDER, model: { kind: 'pipeline', task: 'translation', model: 'x' } })).toMatch(/^model\.task:/);
    expect(refusal({ ...EMBEDDER, model: { kind: 'onnx' } })).toMatch(/^model\.kind:/);
    expect(refusal({ ...CHAT, model: { kind: 'llm', modelId: 'has space' } })).toMatch(/^model\.modelId:/);
    expect(refusal({ ...EMBEDDER, tags: ['Not A Tag'] })).toMatch(/^tags\.0:/);
    expect(refusal({ ...EMBEDDER, tags: Array.from({ length: 33 }, (_, i) => `t${i}`) })).toMatch(/^tags:/);
    expect(refusal({ ...CHAT, minReplicas: 4, maxReplicas: 2 })).toMatch(/minReplicas \(4\) is above maxReplicas \(2\)/);
    expect(refusal({ ...CHAT, maxReplicas: 1000 })).toMatch(/^maxReplicas:/);
    expect(refusal({ ...EMBEDDER, inputSchema: { type: 12 } })).toMatch(/^inputSchema is not a JSON Schema/);
    expect(refusal({ ...EMBEDDER, outputSchema: { properties: 'none' } })).toMatch(/^outputSchema is not a JSON Schema/);
    expect(refusal({ ...EMBEDDER, inputSchema: undefined })).toMatch(/^inputSchema:/);
    expect(refusal({ ...EMBEDDER, owner: 'me' })).toMatch(/owner/); // the server sets the owner
    expect(refusal({ ...EMBEDDER, description: 'x'.repeat(40_000) })).toMatch(/at most 32768/);
    expect(refusal('a string')).toMatch(/^block:/);
  });
});

describe('the registry of a network', () => {
  it('holds at most MAX_BLOCKS_PER_NETWORK blocks', () => {
    const governance = new Governance();
    governance.joined('net', 'owner');
    const registry = new BlockRegistry(governance);
    for (let i = 0; i < MAX_BLOCKS_PER_NETWORK; i++) registry.create('net', 'owner', { ...EMBEDDER, uri: `embedding.minilm:${i}` });
    expect(() => registry.create('net', 'owner', { ...EMBEDDER, uri: 'embedding.minilm:x' })).toThrow(expect.objectContaining({ code: 'ERR_REGISTRY_FULL' }));
    registry.delete('net', 'owner', 'embedding.minilm:0');
    expect(registry.create('net', 'owner', { ...EMBEDDER, uri: 'embedding.minilm:x' }).uri).toBe('embedding.minilm:x');
  });
});

describe('blocks over the signaling server and the SDK', () => {
  let dir: string;
  let server: SignalingServer;
  let owner: Grid;
  let other: Grid;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aigrid-blocks-'));
    server = await startSignalingServer({ dataDir: dir });
    // The first to join owns the network.
    owner = await connect({ signal: server.wsUrl, network: 'blocks', identity: testIdentity('blocks-owner') });
    other = await connect({ signal: server.wsUrl, network: 'blocks', identity: testIdentity('blocks-other') });
  });

  afterAll(async () => {
    owner?.close();
    other?.close();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('are created, listed, got, updated and deleted by who may; others are refused by name', async () => {
    const made = await other.blocks.create(EMBEDDER);
    expect(made).toMatchObject({ uri: EMBEDDER.uri, owner: testIdentity('blocks-other').peerId, minReplicas: 1 });
    expect(made.createdAt).toBe(made.updatedAt);
    await owner.blocks.create(CHAT);
    await expect(owner.blocks.create(CHAT)).rejects.toMatchObject({ code: 'ERR_BLOCK_EXISTS' });
    await expect(owner.blocks.create({ ...CHAT, uri: 'llm' })).rejects.toMatchObject({ code: 'ERR_INVALID_BLOCK', message: expect.stringMatching(/^uri:/) });

    expect((await owner.blocks.list()).map((b) => b.uri).sort()).toEqual([CHAT.uri, EMBEDDER.uri].sort());
    expect((await owner.blocks.list({ type: 'embedding' })).map((b) => b.uri)).toEqual([EMBEDDER.uri]);
    expect((await other.blocks.list({ tags: ['task=chat'] })).map((b) => b.uri)).toEqual([CHAT.uri]);
    expect(await other.blocks.list({ tags: ['task=chat', 'small'] })).toEqual([]);
    expect(await owner.blocks.get(EMBEDDER.uri)).toEqual(made);
    await expect(owner.blocks.get('embedding.nothing:1')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_BLOCK' });

    // Another's block: not for a member to change; the network's owner may.
    await expect(other.blocks.update({ ...CHAT, tags: ['mine'] })).rejects.toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
    await expect(other.blocks.delete(CHAT.uri)).rejects.toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
    const changed = await owner.blocks.update({ ...EMBEDDER, description: 'sentence embeddings' });
    expect(changed).toMatchObject({ owner: made.owner, createdAt: made.createdAt, description: 'sentence embeddings' });
    expect(changed.updatedAt).toBeGreaterThanOrEqual(made.updatedAt);
    await expect(owner.blocks.update({ ...EMBEDDER, uri: 'embedding.other:1' })).rejects.toMatchObject({ code: 'ERR_UNKNOWN_BLOCK' });
    expect(await other.blocks.delete(EMBEDDER.uri)).toMatchObject({ uri: EMBEDDER.uri });
    expect((await owner.blocks.list()).map((b) => b.uri)).toEqual([CHAT.uri]);
  });

  it('wire into vDAGs, compiled against the network\'s blocks when created; bad ones are refused naming the node', async () => {
    await other.blocks.create({ ...EMBEDDER, uri: 'embedding.minilm:3' });
    const spec = {
      id: 'chat-then-embed',
      nodes: [
        { id: 'chat', block: CHAT.uri },
        { id: 'embed', select: { tags: ['task=embedding'] }, preprocess: 'text-of-reply' },
      ],
      connections: [{ from: 'chat', to: 'embed' }],
      input: 'chat',
      output: 'embed',
    };
    const made = await other.vdags.create(spec);
    expect(made).toMatchObject({ id: spec.id, owner: testIdentity('blocks-other').peerId, nodes: spec.nodes });
    await expect(other.vdags.create(spec)).rejects.toMatchObject({ code: 'ERR_VDAG_EXISTS' });
    await expect(other.vdags.create({ ...spec, id: 'cyclic', connections: [...spec.connections, { from: 'embed', to: 'chat' }] })).rejects.toMatchObject({
      code: 'ERR_INVALID_VDAG',
      message: expect.stringMatching(/node chat takes the vDAG's input and cannot be fed by node embed/),
    });
    await expect(other.vdags.create({ ...spec, id: 'ghost', nodes: [{ id: 'chat', block: 'llm.ghost:1' }, spec.nodes[1]!] })).rejects.toMatchObject({
      code: 'ERR_INVALID_VDAG',
      message: expect.stringMatching(/node chat: no block llm\.ghost:1/),
    });
    expect((await owner.vdags.list()).map((v) => v.id)).toEqual([spec.id]);
    expect(await owner.vdags.get(spec.id)).toEqual(made);
    await expect(owner.vdags.get('nothing')).rejects.toMatchObject({ code: 'ERR_UNKNOWN_VDAG' });
    await expect(owner.vdags.update({ ...spec, description: 'the owner of the network may' })).resolves.toMatchObject({ description: 'the owner of the network may' });
  });

  it('outlive a restart on the same data folder, with the policies', async () => {
    await owner.blocks.create({ ...EMBEDDER, uri: 'embedding.kept:2' });
    await owner.policies.create({ id: 'kept', hook: 'vdag', code: 'function eval(parameters, input) { return input; }', parameters: { n: 1 } });
    const policiesBefore = await owner.policies.list();
    const vdagsBefore = await owner.vdags.list();
    const before = await owner.blocks.list();
    const url = new URL(server.wsUrl);
    owner.close();
    other.close();
    await server.close();
    server = await startSignalingServer({ dataDir: dir, port: Number(url.port) });
    owner = await connect({ signal: server.wsUrl, network: 'blocks', identity: testIdentity('blocks-owner') });
    other = await connect({ signal: server.wsUrl, network: 'blocks', identity: testIdentity('blocks-other') });
    expect(await other.blocks.list()).toEqual(before);
    expect(await other.vdags.list()).toEqual(vdagsBefore);
    expect(vdagsBefore.length).toBe(1);
    expect(await other.policies.list()).toEqual(policiesBefore);
    expect(policiesBefore.map((p) => p.id)).toContain('kept');
    // The owner is still the network's owner after the restart.
    expect(await owner.blocks.delete('embedding.kept:2')).toMatchObject({ uri: 'embedding.kept:2' });
  });

  it('refuse malformed, oversized and repeated registry requests by name, and keep answering', async () => {
    const raw = await TestClient.join(server.wsUrl, 'blocks-raw', 'blocks');
    try {
      // A request missing what its op needs, an unknown op, a key of the wrong shape: the parser's refusal.
      const bad = [
        { type: 'blocks', requestId: 1, op: 'get' },
        { type: 'vdags', requestId: 2, op: 'create' },
        { type: 'policies', requestId: 3, op: 'burn', id: 'x' },
        { type: 'blocks', requestId: 4, op: 'delete', uri: 'not a uri' },
      ];
      for (const m of bad) raw.send(JSON.stringify(m));
      for (let i = 0; i < bad.length; i++) expect(await raw.next('error')).toMatchObject({ code: 'ERR_INVALID_MESSAGE' });
      // Specs too large for their registry, inside a frame the server takes.
      raw.send({ type: 'vdags', requestId: 5, op: 'create', vdag: { id: 'big', description: 'x'.repeat(40_000), nodes: [], input: 'a', output: 'a' } } as never);
      expect(await raw.next('error', (e) => e.requestId === 5)).toMatchObject({ code: 'ERR_INVALID_VDAG', message: expect.stringMatching(/at most 32768/) });
      raw.send({ type: 'policies', requestId: 6, op: 'create', policy: { id: 'big', hook: 'vdag', code: 'x', parameters: { blob: 'x'.repeat(9_000) } } } as never);
      expect(await raw.next('error', (e) => e.requestId === 6)).toMatchObject({ code: 'ERR_POLICY_INVALID', message: expect.stringMatching(/parameters: at most 8192/) });
      // Repeated past the per-type rate: refused as such, then answered again.
      for (let i = 0; i < 40; i++) raw.send({ type: 'blocks', requestId: 100 + i, op: 'list' } as never);
      expect(await raw.next('error', (e) => e.code === 'ERR_RATE_LIMITED')).toMatchObject({ ref: 'blocks' });
      await new Promise((r) => setTimeout(r, 1_100));
      raw.send({ type: 'blocks', requestId: 200, op: 'list' } as never);
      expect(await raw.next('blocks', (m) => m.requestId === 200)).toMatchObject({ requestId: 200 });
    } finally {
      await raw.close();
    }
  });
});
