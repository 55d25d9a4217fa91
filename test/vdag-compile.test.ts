// vDAG specs compiled against a network's blocks: a valid graph gives an order where every node
// follows its inputs, selection queries pick blocks, and each bad spec (cycles, unknown blocks or
// nodes, a second input without join, unreachable nodes, mismatched schemas) is refused with
// ERR_INVALID_VDAG naming the node.
import { describe, expect, it } from 'vitest';
import type { Block, VdagSpecInput } from '../protocol/index.ts';
import { compileVdag, schemaMismatch } from '../plan/vdag.ts';

const text = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] };
const vector = { type: 'array', items: { type: 'number' } };
const label = { type: 'object', properties: { label: { type: 'string' }, score: { type: 'number' } }, required: ['label', 'score'] };

function block(uri: string, inputSchema: object, outputSchema: object, tags: string[] = []): Block {
  return { uri, model: { kind: 'llm', modelId: 'm' }, tags, minReplicas: 1, maxReplicas: 1, inputSchema: inputSchema as Block['inputSchema'], outputSchema: outputSchema as Block['outputSchema'], owner: 'owner', createdAt: 0, updatedAt: 0 };
}

const BLOCKS: Block[] = [
  block('llm.writer:1', text, text, ['task=chat']),
  block('embedding.minilm:1', text, vector, ['task=embedding']),
  block('embedding.minilm:2', text, vector, ['task=embedding']),
  block('classify.sentiment:1', text, label, ['task=classify']),
  block('merge.pair:1', { type: 'object', properties: { embed: vector, judge: label }, required: ['embed', 'judge'] }, text),
];

/** writer -> (embed, judge) -> merge: a fan-out and an explicit fan-in. */
const DIAMOND: VdagSpecInput = {
  id: 'write-and-judge',
  nodes: [
    { id: 'writer', block: 'llm.writer:1' },
    { id: 'embed', select: { tags: ['task=embedding'] } },
    { id: 'judge', block: 'classify.sentiment:1' },
    { id: 'merge', block: 'merge.pair:1', join: 'all' },
  ],
  connections: [
    { from: 'writer', to: 'embed' },
    { from: 'writer', to: 'judge' },
    { from: 'embed', to: 'merge' },
    { from: 'judge', to: 'merge' },
  ],
  input: 'writer',
  output: 'merge',
};

function refusal(spec: unknown, blocks = BLOCKS): string {
  try {
    compileVdag(spec, blocks);
  } catch (err) {
    expect(err).toMatchObject({ code: 'ERR_INVALID_VDAG' });
    return (err as Error).message;
  }
  throw new Error('compiled');
}

describe('compiling a vDAG', () => {
  it('orders the nodes after their inputs, resolves selections (first by URI) and records the edges', () => {
    const dag = compileVdag(DIAMOND, BLOCKS);
    expect(dag.order[0]).toBe('writer');
    expect(dag.order.at(-1)).toBe('merge');
    expect(dag.order.indexOf('embed')).toBeLessThan(dag.order.indexOf('merge'));
    expect(dag.nodes.get('embed')!.block.uri).toBe('embedding.minilm:1');
    expect(dag.nodes.get('merge')!.inputs).toEqual(['embed', 'judge']);
    expect(dag.nodes.get('writer')!.outputs).toEqual(['embed', 'judge']);
    // One node alone is a vDAG too.
    expect(compileVdag({ id: 'one', nodes: [{ id: 'a', block: 'llm.writer:1' }], input: 'a', output: 'a' }, BLOCKS).order).toEqual(['a']);
  });

  it('refuses each bad spec with ERR_INVALID_VDAG naming the node', () => {
    const nodes = DIAMOND.nodes;
    expect(refusal({ ...DIAMOND, id: 'Bad Id' })).toMatch(/^id:/);
    expect(refusal({ ...DIAMOND, nodes: [...nodes, { id: 'x', block: 'llm.writer:1', select: { type: 'llm' } }] })).toMatch(/^nodes\.4: a node names a block or a select query/);
    expect(refusal({ ...DIAMOND, nodes: [...nodes, { id: 'writer', block: 'llm.writer:1' }] })).toMatch(/node writer is declared twice/);
    expect(refusal({ ...DIAMOND, nodes: nodes.map((n) => (n.id === 'judge' ? { ...n, block: 'classify.none:1' } : n)) })).toMatch(/node judge: no block classify\.none:1/);
    expect(refusal({ ...DIAMOND, nodes: nodes.map((n) => (n.id === 'embed' ? { id: 'embed', select: { tags: ['task=speech'] } } : n)) })).toMatch(/node embed: no block answers its select/);
    expect(refusal({ ...DIAMOND, connections: [...DIAMOND.connections!, { from: 'ghost', to: 'merge' }] })).toMatch(/from node ghost, which is not declared/);
    expect(refusal({ ...DIAMOND, connections: [...DIAMOND.connections!, { from: 'writer', to: 'embed' }] })).toMatch(/node writer is connected to node embed twice/);
    expect(refusal({ ...DIAMOND, nodes: nodes.map((n) => (n.id === 'merge' ? { id: 'merge', block: 'merge.pair:1' } : n)) })).toMatch(/node merge is fed by embed and judge: declare join/);
    expect(refusal({ ...DIAMOND, output: 'nowhere' })).toMatch(/node nowhere \(the vDAG's output\) is not declared/);
    expect(refusal({ ...DIAMOND, input: 'embed' })).toMatch(/node embed takes the vDAG's input and cannot be fed by node writer/);
    // A cycle: judge feeds writer back (writer is then fed, so make another node the input).
    const cyclic = {
      id: 'loop',
      nodes: [{ id: 'a', block: 'llm.writer:1' }, { id: 'b', block: 'llm.writer:1', join: 'all' }, { id: 'c', block: 'llm.writer:1' }],
      connections: [{ from: 'a', to: 'b' }, { from: 'b', to: 'c' }, { from: 'c', to: 'b' }],
      input: 'a',
      output: 'c',
    };
    expect(refusal(cyclic)).toMatch(/node b lies on a cycle/);
    expect(refusal({ ...DIAMOND, nodes: [...nodes, { id: 'stray', block: 'llm.writer:1' }] })).toMatch(/node stray is not reached from the input node writer/);
    expect(refusal({ ...DIAMOND, nodes: [...nodes, { id: 'dead', block: 'llm.writer:1' }], connections: [...DIAMOND.connections!, { from: 'writer', to: 'dead' }] })).toMatch(
      /node dead does not lead to the output node merge/,
    );
    // Mismatched schemas: an embedding vector fed to a block that takes text.
    expect(refusal({ id: 'bad', nodes: [{ id: 'e', block: 'embedding.minilm:1' }, { id: 'w', block: 'llm.writer:1' }], connections: [{ from: 'e', to: 'w' }], input: 'e', output: 'w' })).toMatch(
      /node w \(llm\.writer:1\) cannot take the output of node e \(embedding\.minilm:1\): the value is array where object is expected/,
    );
    // A join whose block needs an input the graph does not give it: merge takes embed and judge.
    const lacking = {
      ...DIAMOND,
      nodes: nodes.map((n) => (n.id === 'judge' ? { id: 'critic', block: 'classify.sentiment:1' } : n)),
      connections: DIAMOND.connections!.map((c) => ({ from: c.from === 'judge' ? 'critic' : c.from, to: c.to === 'judge' ? 'critic' : c.to })),
    };
    expect(refusal(lacking)).toMatch(/node merge \(merge\.pair:1\) cannot take the outputs of embed, critic: judge is required but may be missing/);
  });

  it('leaves the schemas unchecked where a policy reshapes the value', () => {
    const spec = { id: 'reshaped', nodes: [{ id: 'e', block: 'embedding.minilm:1' }, { id: 'w', block: 'llm.writer:1', preprocess: 'vector-to-text' }], connections: [{ from: 'e', to: 'w' }], input: 'e', output: 'w' };
    expect(compileVdag(spec, BLOCKS).order).toEqual(['e', 'w']);
  });
});

describe('schema compatibility', () => {
  it('compares types, required properties, property and item schemas; open schemas take anything', () => {
    expect(schemaMismatch({ type: 'integer' }, { type: 'number' })).toBeUndefined();
    expect(schemaMismatch({ type: 'number' }, { type: 'integer' })).toMatch(/number where integer/);
    expect(schemaMismatch({ type: ['string', 'null'] }, { type: 'string' })).toMatch(/null where string/);
    expect(schemaMismatch(text, {})).toBeUndefined();
    expect(schemaMismatch({}, text)).toMatch(/text is required but may be missing/);
    expect(schemaMismatch({ type: 'object', properties: { text: { type: 'number' } }, required: ['text'] }, text)).toMatch(/^text is number where string/);
    expect(schemaMismatch({ type: 'array', items: { type: 'string' } }, vector)).toMatch(/the value\[\] is string where number/);
  });
});
