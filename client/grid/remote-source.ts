// What a peer agrees to open for a spec that came from the network: weights over http(s) only.
// A remote spec naming a local path (or a file: URL, or a hub id with a file: mirror) would make
// a Node peer read its own disk for a stranger; hub ids are resolved here, so the opener never
// tries a local folder of the same name.
import type { ModelSpec } from '../../protocol/index.ts';
import { AigridError } from '../../protocol/index.ts';
import { isGgufRef, splitGgufRef } from '../../protocol/ids.ts';
import { fileUrl, resolveModelUrl } from '../model/checkpoint/source.ts';

/** The spec with its source resolved to an http(s) folder URL (a GGUF file's URL); ERR_INVALID_ARGUMENT otherwise. */
export function remoteWeights(model: ModelSpec): ModelSpec {
  const refused = () =>
    new AigridError('ERR_INVALID_ARGUMENT', `${model.modelId}: weights from ${JSON.stringify(model.source.slice(0, 200))} are not an http(s) URL or a hub id with an http(s) mirror; a peer opens nothing else for the network`);
  let url: string;
  try {
    const options = { baseUrl: model.baseUrl, revision: model.revision };
    if (isGgufRef(model.source)) {
      const { folder, file } = splitGgufRef(model.source);
      url = fileUrl(resolveModelUrl(folder, options), file);
    } else url = resolveModelUrl(model.source, options);
  } catch {
    throw refused();
  }
  if (!/^https?:\/\//i.test(url)) throw refused();
  const { baseUrl: _b, revision: _r, ...rest } = model;
  return { ...rest, source: url };
}
