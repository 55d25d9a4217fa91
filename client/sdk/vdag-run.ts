// Runs a compiled vDAG (plan/vdag.ts) in the client: every node starts once the nodes feeding it
// have given their outputs, so the successors of a node run side by side (fan-out) and a join node
// waits for all of its inputs, which it takes as one object keyed by node id (fan-in). The first
// node to fail ends the run with its error, named after the node; nodes not yet started are not.
import type { CompiledNode, CompiledVdag } from '../../plan/vdag.ts';
import { AigridError } from '../../protocol/index.ts';

export type VdagEvent =
  | { type: 'node-start'; node: string; block: string }
  /** Text of an LLM node as it is generated. */
  | { type: 'token'; node: string; text: string }
  | { type: 'node-end'; node: string; output: unknown }
  /** A pre- or post-processing policy failed: the value went on unchanged (the default). */
  | { type: 'policy-failure'; node: string; policy: string; code: string; message: string };

export interface VdagRunResult {
  /** The output node's output. */
  output: unknown;
  /** Every node's output, by node id. */
  outputs: Record<string, unknown>;
}

/** Runs one node's block on its input; `emit` reports the node's tokens as they come. */
export type NodeRunner = (node: CompiledNode, input: unknown, emit: (event: VdagEvent) => void) => Promise<unknown>;

export async function runVdag(dag: CompiledVdag, input: unknown, runNode: NodeRunner, onEvent: (event: VdagEvent) => void = () => {}, signal?: AbortSignal): Promise<VdagRunResult> {
  const outputs: Record<string, unknown> = {};
  const running = new Map<string, Promise<unknown>>();
  // The order puts every node after its inputs, so their promises exist when a node is reached.
  for (const id of dag.order) {
    const node = dag.nodes.get(id)!;
    const inputs = node.inputs.map((from) => running.get(from)!);
    running.set(
      id,
      Promise.all(inputs).then(async (given) => {
        if (signal?.aborted) throw new AigridError('ERR_ABORTED', `the vDAG run was aborted before node ${id}`);
        const value = node.inputs.length === 0 ? input : node.node.join === 'all' ? Object.fromEntries(node.inputs.map((from, i) => [from, given[i]])) : given[0];
        onEvent({ type: 'node-start', node: id, block: node.block.uri });
        let output: unknown;
        try {
          output = await runNode(node, value, onEvent);
        } catch (err) {
          const code = err instanceof AigridError ? err.code : 'ERR_INVALID_ARGUMENT';
          throw new AigridError(code, `node ${id} (${node.block.uri}): ${(err as Error)?.message ?? String(err)}`, { cause: err });
        }
        outputs[id] = output;
        onEvent({ type: 'node-end', node: id, output });
        return output;
      }),
    );
  }
  // Every branch is awaited (none left rejecting unheard); the first failure is the run's.
  const settled = await Promise.allSettled(running.values());
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return { output: outputs[dag.spec.output], outputs };
}
