// OpenAI's embeddings over a network's feature-extraction pipeline blocks: the request checked,
// the block named by its URI resolved to the model id it is served under, and the answer shaped
// as OpenAI's (float lists, or base64 of little-endian float32 as its clients ask by default).
import { AigridError, BlockUriSchema, MAX_PIPELINE_INPUT_CHARS, MAX_PIPELINE_INPUTS, PIPELINE_MODEL_PREFIX, pipelineModelId, type Block, type PipelineTask } from '../../protocol/index.ts';
import type { BlockRunResult, CreateEmbeddingResponse, EmbeddingCreateParams } from './types.ts';

/** The texts of a request: one string or up to 64, each within the bound a call takes. */
export function checkTexts(input: unknown, what = 'input'): string[] {
  const texts = typeof input === 'string' ? [input] : input;
  if (!Array.isArray(texts) || texts.length === 0 || !texts.every((t) => typeof t === 'string')) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `${what} must be a string or a non-empty array of strings (token arrays are not taken: the block tokenizes)`);
  }
  if (texts.length > MAX_PIPELINE_INPUTS) throw new AigridError('ERR_INVALID_ARGUMENT', `${what}: at most ${MAX_PIPELINE_INPUTS} texts per request, got ${texts.length}`);
  const long = texts.findIndex((t) => t.length > MAX_PIPELINE_INPUT_CHARS);
  if (long >= 0) throw new AigridError('ERR_INVALID_ARGUMENT', `${what}[${long}] is ${texts[long]!.length} characters; at most ${MAX_PIPELINE_INPUT_CHARS}`);
  return texts as string[];
}

/**
 * The model id a pipeline block of `task` is served under, from its URI (looked up, so a wrong
 * kind or task is named) or from the id itself.
 */
export async function pipelineModelOf(model: unknown, task: PipelineTask, getBlock: (uri: string) => Promise<Block>): Promise<string> {
  if (typeof model === 'string' && model.startsWith(PIPELINE_MODEL_PREFIX)) return model;
  if (typeof model !== 'string' || !BlockUriSchema.safeParse(model).success) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `model must be the URI of a ${task} block (<type>.<name>:<version>) or the id it is served under (${PIPELINE_MODEL_PREFIX}...), got ${JSON.stringify(model)?.slice(0, 200)}`);
  }
  const block = await getBlock(model);
  if (block.model.kind !== 'pipeline' || block.model.task !== task) {
    const is = block.model.kind === 'pipeline' ? `a ${block.model.task} pipeline` : 'a layer-split LLM';
    throw new AigridError('ERR_INVALID_ARGUMENT', `block ${model} is ${is}, not a ${task} pipeline`);
  }
  return pipelineModelId(model);
}

export function checkEmbeddingParams(params: EmbeddingCreateParams): { texts: string[]; format: 'float' | 'base64' } {
  if (!params || typeof params !== 'object') throw new AigridError('ERR_INVALID_ARGUMENT', 'embeddings.create takes { model, input }');
  const format = params.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') throw new AigridError('ERR_INVALID_ARGUMENT', `encoding_format must be "float" or "base64", got ${JSON.stringify(format)}`);
  if (params.dimensions !== undefined && params.dimensions !== null && !(Number.isInteger(params.dimensions) && params.dimensions > 0)) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `dimensions must be a positive whole number, got ${JSON.stringify(params.dimensions)}`);
  }
  return { texts: checkTexts(params.input), format };
}

/** OpenAI's response for the embeddings a block gave. */
export function embeddingResponse(params: EmbeddingCreateParams, format: 'float' | 'base64', result: BlockRunResult, count: number): CreateEmbeddingResponse {
  const rows = result.embeddings;
  if (!rows || rows.length !== count) throw new AigridError('ERR_INVALID_ARGUMENT', `replica ${result.peerId} answered ${rows?.length ?? 0} embeddings for ${count} texts`);
  const width = rows[0]!.length;
  if (params.dimensions != null && params.dimensions !== width) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `block ${params.model} gives ${width} dimensions; it cannot give ${params.dimensions}`);
  }
  const data = rows.map((row, index) => ({ object: 'embedding' as const, index, embedding: format === 'base64' ? base64Floats(row) : row }));
  return { object: 'list', data, model: params.model, usage: { prompt_tokens: result.tokens, total_tokens: result.tokens }, aigrid: { peerId: result.peerId } };
}

function base64Floats(row: number[]): string {
  const bytes = new Uint8Array(Float32Array.from(row).buffer); // little-endian on every platform that runs this
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}
