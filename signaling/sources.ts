// Where a network may tell its peers to load weights from. A spec names a URL that every peer it
// is placed on will fetch, so the server checks it first: https URLs and Hugging Face ids (with an
// https mirror) anywhere; plain http only on a server bound to loopback (a grid on one machine or
// in tests) and under the prefixes the operator allows (e.g. the files `aigrid start` offers).
import { AigridError, isHuggingFaceId, isLoopbackHost, type ModelSpec } from '../protocol/index.ts';
import { isGgufRef, splitGgufRef } from '../protocol/ids.ts';

export interface SourcePolicy {
  /** The server listens on loopback only. */
  loopbackBound: boolean;
  /** URL prefixes allowed besides the defaults. */
  allowed?: readonly string[];
}

/** ERR_INVALID_ARGUMENT unless the spec's weights come from a place this network allows. */
export function checkSource(spec: ModelSpec, policy: SourcePolicy): void {
  const refuse = (why: string) =>
    new AigridError('ERR_INVALID_ARGUMENT', `${spec.modelId}: weights from ${JSON.stringify(spec.source.slice(0, 200))} are not allowed on this network: ${why}`);
  const allowedUrl = (text: string): boolean => {
    if (policy.allowed?.some((prefix) => text.startsWith(prefix))) return true;
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return false;
    }
    if (url.username || url.password) return false;
    return url.protocol === 'https:' || (url.protocol === 'http:' && policy.loopbackBound && isLoopbackHost(url.hostname));
  };
  if (/^[a-z][a-z0-9+.-]*:/i.test(spec.source)) {
    if (!allowedUrl(spec.source)) throw refuse('https URLs, Hugging Face ids and the prefixes the operator allows only');
    return;
  }
  // A GGUF file on the hub is named by its repository and its path there (org/name/dir/file.gguf).
  const hubId = isGgufRef(spec.source) ? splitGgufRef(spec.source).folder : spec.source;
  if (!isHuggingFaceId(hubId)) throw refuse('neither a URL nor a Hugging Face id (org/name) or a GGUF file in one (org/name/file.gguf)');
  if (spec.baseUrl !== undefined && !allowedUrl(spec.baseUrl)) throw refuse(`its mirror ${JSON.stringify(spec.baseUrl.slice(0, 200))} is not an allowed URL`);
}
