// Which tensors belong to which transformer layer, by the names Hugging Face checkpoints use:
// LLaMA-style `model.layers.{i}.`, GPT-2-style `h.{i}.` / `transformer.h.{i}.`, and `blocks.{i}.`.

const LAYER = /(?:^|\.)(?:layers|h|blocks)\.(\d+)\./;

/** The layer a tensor belongs to, or undefined for embeddings, final norms and heads. */
export function layerOf(name: string): number | undefined {
  const m = LAYER.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** The tensors of layers [begin, end): what a peer serving that range downloads. */
export function tensorsOfLayers(names: Iterable<string>, begin: number, end: number): string[] {
  const out: string[] = [];
  for (const name of names) {
    const layer = layerOf(name);
    if (layer !== undefined && layer >= begin && layer < end) out.push(name);
  }
  return out;
}
