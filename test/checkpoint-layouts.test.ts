// Checkpoints that store the same tensors under other names: GPT-2 as save_pretrained writes it
// (`transformer.`), a LLaMA text model inside a multimodal wrapper (`language_model.`, in two
// shards), a base LlamaModel (no `model.`). Each loads and computes exactly what its base model
// does; the renaming rule touches nothing else.
import { describe, expect, it } from 'vitest';
import { createBackend } from '../client/model/backend/select.ts';
import { Head } from '../client/model/head.ts';
import { Shard } from '../client/model/shard.ts';
import { canonicalNames } from '../client/model/checkpoint/renames.ts';
import { fixtures, GOLDEN_STEPS, LAYOUT_MODELS, readCheckpoint } from './fixtures/index.ts';
import { greedyRun, openFixture } from './helpers/model-runtime.ts';
import { modelDir } from './fixtures/index.ts';

async function run(name: string, prompt: readonly number[]) {
  const backend = await createBackend('cpu');
  const reader = await openFixture(name);
  const head = await Head.load(reader, { backend });
  const shard = await Shard.load(reader, { start: 0, end: head.config.numLayers, backend });
  try {
    return { names: reader.listTensors().sort(), run: await greedyRun(head, [shard], prompt, GOLDEN_STEPS, 'layout') };
  } finally {
    shard.destroy();
    head.destroy();
  }
}

describe('checkpoint name layouts', () => {
  it.each(LAYOUT_MODELS)('$name: read under its base\'s names, computing exactly what $of does', async ({ name, of }) => {
    const golden = (await fixtures()).models.find((m) => m.name === of)!.golden[2]!;
    const stored = [...(await readCheckpoint(modelDir(name))).keys()];
    expect(stored.some((n) => n.startsWith('model.layers.') || n.startsWith('h.'))).toBe(false); // really stored otherwise
    const [base, variant] = await Promise.all([run(of, golden.ids), run(name, golden.ids)]);
    expect(variant.names).toEqual(base.names);
    expect(variant.run.tokens).toEqual(golden.greedy);
    expect(variant.run.hidden).toEqual(base.run.hidden);
    expect(variant.run.logits).toEqual(base.run.logits);
  });

  it('renames only by a prefix the whole checkpoint carries', () => {
    const map = (names: string[]) => Object.fromEntries(canonicalNames(names));
    // The runtime's own names stay as they are, however they look.
    expect(map(['model.layers.0.mlp.up_proj.weight', 'model.norm.weight', 'lm_head.weight'])).toEqual({
      'model.layers.0.mlp.up_proj.weight': 'model.layers.0.mlp.up_proj.weight', 'model.norm.weight': 'model.norm.weight', 'lm_head.weight': 'lm_head.weight',
    });
    expect(map(['h.0.attn.c_attn.weight', 'wte.weight'])).toEqual({ 'h.0.attn.c_attn.weight': 'h.0.attn.c_attn.weight', 'wte.weight': 'wte.weight' });
    // A wrapper's other parts (a vision tower) keep their names and are never read.
    expect(map(['language_model.model.norm.weight', 'language_model.lm_head.weight', 'vision_tower.blocks.0.weight'])).toEqual({
      'language_model.model.norm.weight': 'model.norm.weight', 'language_model.lm_head.weight': 'lm_head.weight', 'vision_tower.blocks.0.weight': 'vision_tower.blocks.0.weight',
    });
    expect(map(['model.language_model.layers.0.input_layernorm.weight'])).toEqual({ 'model.language_model.layers.0.input_layernorm.weight': 'model.layers.0.input_layernorm.weight' });
    // A top-level `layers.` is a base model only when nothing is under `model.`.
    expect(map(['layers.0.input_layernorm.weight', 'norm.weight', 'embed_tokens.weight'])).toEqual({
      'layers.0.input_layernorm.weight': 'model.layers.0.input_layernorm.weight', 'norm.weight': 'model.norm.weight', 'embed_tokens.weight': 'model.embed_tokens.weight',
    });
    expect(map(['layers.0.x', 'model.norm.weight'])).toEqual({ 'layers.0.x': 'layers.0.x', 'model.norm.weight': 'model.norm.weight' });
  });
});
