// The small JSON files of a Hugging Face model folder, validated so a damaged file is a named error.
import { AigridError } from '../../../protocol/errors.ts';

export function parseJsonObject(text: string, url: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${url}: not JSON (${(err as Error).message.slice(0, 80)})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${url}: not a JSON object`);
  }
  return json as Record<string, unknown>;
}

/** A relative path inside the model folder: no '..', no absolute path, no scheme. */
const SAFE_FILE = /^(?!.*(?:^|\/)\.\.?(?:\/|$))[^/\\:][^\\:]*$/;

/** model.safetensors.index.json's weight_map: tensor name -> shard file. */
export function parseIndex(text: string, url: string): Map<string, string> {
  const weightMap = parseJsonObject(text, url).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${url}: weight_map is missing or not an object`);
  }
  const out = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMap)) {
    if (typeof file !== 'string' || !SAFE_FILE.test(file)) {
      throw new AigridError('ERR_CHECKPOINT_CORRUPT', `${url}: weight_map.${name} is not a file of the model folder: ${JSON.stringify(file)}`);
    }
    out.set(name, file);
  }
  return out;
}
