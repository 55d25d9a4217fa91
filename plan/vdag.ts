// Compiles a vDAG spec (protocol/vdag.ts) against a network's blocks into the graph a client runs:
// each node's block resolved (by URI, or the first by URI of those its query selects), the nodes
// in an order where every node comes after its inputs, and each connection checked: no cycle, no
// unknown node, no node fed twice without `join`, every node reachable from the input and leading
// to the output, and each output schema acceptable to the input schema it feeds (unless a policy
// reshapes the value between them). Every refusal is ERR_INVALID_VDAG naming the node.
import { AigridError, blockMatches, VdagSpecSchema, type Block, type VdagNode, type VdagSpec } from '../protocol/index.ts';

type Schema = Record<string, unknown>;

export interface CompiledNode {
  node: VdagNode;
  block: Block;
  /** The nodes whose outputs feed this one (one, or several for a join). */
  inputs: string[];
  /** The nodes this one's output goes to. */
  outputs: string[];
}

export interface CompiledVdag {
  spec: VdagSpec;
  nodes: Map<string, CompiledNode>;
  /** Every node after the nodes that feed it. */
  order: string[];
}

function refuse(message: string): never {
  throw new AigridError('ERR_INVALID_VDAG', message);
}

const typesOf = (s: Schema): string[] | undefined => (typeof s.type === 'string' ? [s.type] : Array.isArray(s.type) ? (s.type as string[]) : undefined);

/**
 * Why a value valid under `from` may be refused by `to`, or undefined when it will be taken. A
 * structural check of the parts that decide it (type, required properties, property and item
 * schemas); what either schema leaves open is taken as compatible.
 */
export function schemaMismatch(from: Schema, to: Schema, at = ''): string | undefined {
  const want = typesOf(to);
  const have = typesOf(from);
  if (want && have) {
    const taken = (t: string) => want.includes(t) || (t === 'integer' && want.includes('number'));
    const odd = have.find((t) => !taken(t));
    if (odd) return `${at || 'the value'} is ${odd} where ${want.join(' or ')} is expected`;
  }
  if (want?.includes('object') || to.properties !== undefined) {
    const required = Array.isArray(to.required) ? (to.required as string[]) : [];
    const given = new Set(Array.isArray(from.required) ? (from.required as string[]) : []);
    const missing = required.find((key) => !given.has(key));
    if (missing !== undefined) return `${at ? `${at}.` : ''}${missing} is required but may be missing`;
    const toProps = (to.properties ?? {}) as Record<string, Schema>;
    const fromProps = (from.properties ?? {}) as Record<string, Schema>;
    for (const [key, schema] of Object.entries(toProps)) {
      if (fromProps[key] && typeof schema === 'object' && schema) {
        const why = schemaMismatch(fromProps[key]!, schema, at ? `${at}.${key}` : key);
        if (why) return why;
      }
    }
  }
  if (typeof to.items === 'object' && to.items && typeof from.items === 'object' && from.items) {
    return schemaMismatch(from.items as Schema, to.items as Schema, `${at || 'the value'}[]`);
  }
  return undefined;
}

/** The spec checked and compiled against `blocks` (the network's), or ERR_INVALID_VDAG naming what is wrong. */
export function compileVdag(value: unknown, blocks: readonly Block[]): CompiledVdag {
  const parsed = VdagSpecSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    refuse(`${issue.path.length ? issue.path.join('.') : 'vdag'}: ${issue.message}`);
  }
  const spec = parsed.data;
  const byUri = new Map(blocks.map((b) => [b.uri, b]));
  const sorted = [...blocks].sort((a, b) => (a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0));
  const nodes = new Map<string, CompiledNode>();
  for (const node of spec.nodes) {
    if (nodes.has(node.id)) refuse(`node ${node.id} is declared twice`);
    const block = node.block !== undefined ? byUri.get(node.block) : sorted.find((b) => blockMatches(b, node.select));
    if (!block) refuse(node.block !== undefined ? `node ${node.id}: no block ${node.block} on this network` : `node ${node.id}: no block answers its select ${JSON.stringify(node.select)}`);
    nodes.set(node.id, { node, block, inputs: [], outputs: [] });
  }
  const seen = new Set<string>();
  for (const { from, to } of spec.connections) {
    if (!nodes.has(from)) refuse(`a connection comes from node ${from}, which is not declared`);
    if (!nodes.has(to)) refuse(`a connection goes to node ${to}, which is not declared`);
    if (from === to) refuse(`node ${from} is connected to itself`);
    if (seen.has(`${from}>${to}`)) refuse(`node ${from} is connected to node ${to} twice`);
    seen.add(`${from}>${to}`);
    nodes.get(from)!.outputs.push(to);
    nodes.get(to)!.inputs.push(from);
  }
  for (const end of [spec.input, spec.output]) if (!nodes.has(end)) refuse(`node ${end} (the vDAG's ${end === spec.input ? 'input' : 'output'}) is not declared`);
  if (nodes.get(spec.input)!.inputs.length) refuse(`node ${spec.input} takes the vDAG's input and cannot be fed by node ${nodes.get(spec.input)!.inputs[0]}`);
  for (const [id, c] of nodes) {
    if (c.inputs.length > 1 && c.node.join !== 'all') refuse(`node ${id} is fed by ${c.inputs.join(' and ')}: declare join: 'all' to take them together`);
  }

  // Kahn's order; what is left over lies on a cycle.
  const waiting = new Map([...nodes].map(([id, c]) => [id, c.inputs.length]));
  const order: string[] = [];
  const ready = [...nodes.keys()].filter((id) => waiting.get(id) === 0);
  while (ready.length) {
    const id = ready.shift()!;
    order.push(id);
    for (const next of nodes.get(id)!.outputs) {
      const left = waiting.get(next)! - 1;
      waiting.set(next, left);
      if (left === 0) ready.push(next);
    }
  }
  if (order.length < nodes.size) refuse(`node ${[...nodes.keys()].find((id) => !order.includes(id))} lies on a cycle`);

  // Every node runs on the way from the input to the output.
  const reach = (start: string, step: (c: CompiledNode) => string[]) => {
    const found = new Set([start]);
    const stack = [start];
    while (stack.length) for (const next of step(nodes.get(stack.pop()!)!)) if (!found.has(next)) (found.add(next), stack.push(next));
    return found;
  };
  const fromInput = reach(spec.input, (c) => c.outputs);
  const toOutput = reach(spec.output, (c) => c.inputs);
  for (const id of nodes.keys()) {
    if (!fromInput.has(id)) refuse(`node ${id} is not reached from the input node ${spec.input}`);
    if (!toOutput.has(id)) refuse(`node ${id} does not lead to the output node ${spec.output}`);
  }

  // What each node is given must be what its block takes.
  // A node's pre-processing policy, or a feeder's post-processing one, may reshape the value: not checked.
  for (const [id, c] of nodes) {
    if (c.inputs.length === 0 || c.node.preprocess !== undefined || c.inputs.some((from) => nodes.get(from)!.node.postprocess !== undefined)) continue;
    const given: Schema =
      c.inputs.length === 1 && c.node.join !== 'all'
        ? nodes.get(c.inputs[0]!)!.block.outputSchema
        : { type: 'object', properties: Object.fromEntries(c.inputs.map((from) => [from, nodes.get(from)!.block.outputSchema])), required: c.inputs };
    const why = schemaMismatch(given, c.block.inputSchema);
    if (why) refuse(`node ${id} (${c.block.uri}) cannot take ${c.inputs.length > 1 ? `the outputs of ${c.inputs.join(', ')}` : `the output of node ${c.inputs[0]} (${nodes.get(c.inputs[0]!)!.block.uri})`}: ${why}`);
  }
  return { spec, nodes, order };
}
