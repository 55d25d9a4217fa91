// One greedy generation on a head and a whole-model shard, with the time of every token: the loop
// the edge benchmarks run in Node (edge.ts) and in the page (edge-page.ts).
import type { Head } from '../../client/model/head.ts';
import type { Shard } from '../../client/model/shard.ts';

/** The index of the largest value (the lowest on ties). */
function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** `at[0]` is the start, `at[i]` when token i-1 was ready (the first after the prompt's prefill). */
export async function timedGreedy(head: Head, shard: Shard, session: string, prompt: readonly number[], newTokens: number): Promise<{ tokens: number[]; at: number[] }> {
  const at = [performance.now()];
  const tokens: number[] = [];
  let input = [...prompt];
  let pos = 0;
  try {
    while (tokens.length < newTokens) {
      const positions = Uint32Array.from(input, (_, i) => pos + i);
      const hidden = await shard.forward(await head.embed(Uint32Array.from(input), positions), positions, session);
      tokens.push(argmax(await head.logits(hidden, input.length)));
      at.push(performance.now());
      pos += input.length;
      input = [tokens.at(-1)!];
    }
  } finally {
    shard.release(session);
  }
  return { tokens, at };
}
