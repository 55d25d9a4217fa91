// Tensor names as checkpoints store them -> the names the runtime reads. The same weights are
// written under several prefixes: GPT-2's original hub upload has none and `save_pretrained`
// writes `transformer.`; a LLaMA-family base model (LlamaModel, no LM head) has no `model.`;
// multimodal wrappers put the text model under `language_model.` (Llava, Gemma 3 and others).
// One rename applies to the whole checkpoint, chosen from the names present.

/** [stored prefix, canonical prefix], tried in order; the first that some name carries wins. */
const WRAPPERS: readonly (readonly [string, string])[] = [
  ['model.language_model.', 'model.'],
  ['language_model.model.', 'model.'],
  ['transformer.', ''],
];

/** Stored -> canonical name for every tensor of a checkpoint (names without a rename map to themselves). */
export function canonicalNames(stored: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  const wrapper = WRAPPERS.find(([from]) => stored.some((n) => n.startsWith(from)));
  // A base LLaMA-family model: layers, embedding and final norm at the top level.
  const bare = !wrapper && !stored.some((n) => n.startsWith('model.')) && stored.some((n) => /^layers\.\d+\./.test(n));
  for (const name of stored) {
    let canonical = name;
    if (wrapper && name.startsWith(wrapper[0])) canonical = wrapper[1] + name.slice(wrapper[0].length);
    else if (wrapper?.[0] === 'language_model.model.' && name.startsWith('language_model.lm_head.')) canonical = name.slice('language_model.'.length);
    else if (bare && /^(layers\.\d+\.|embed_tokens\.|norm\.)/.test(name)) canonical = `model.${name}`;
    out.set(name, canonical);
  }
  return out;
}
