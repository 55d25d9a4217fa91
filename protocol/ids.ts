// Identifier formats shared by every schema.
import { z } from 'zod';

export const PeerIdSchema = z.string().regex(/^[A-Za-z0-9_-]{4,64}$/, 'peerId: 4-64 of [A-Za-z0-9_-]');
export const NetworkSchema = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'network: 1-64 of [A-Za-z0-9._-]');

/** `org/name` (or a legacy bare `name`) as used on the Hugging Face hub; never a path with `..`. */
const HF_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;

export function isHuggingFaceId(ref: string): boolean {
  return HF_ID.test(ref) && !ref.includes('..');
}

/** A reference to one GGUF file rather than to a model folder. */
export function isGgufRef(ref: string): boolean {
  return /\.gguf$/i.test(ref);
}

/**
 * A GGUF reference as the folder it lies in and the file's path there: a URL's last segment, a hub
 * path `org/name/dir/file.gguf` as `org/name` and `dir/file.gguf`, a local path's base name.
 */
export function splitGgufRef(ref: string): { folder: string; file: string } {
  const parts = ref.split('/');
  if (!/^[a-z][a-z0-9+.-]*:/i.test(ref) && parts.length >= 3 && isHuggingFaceId(parts.slice(0, 2).join('/')) && parts.slice(2).every((p) => /^[\w.-]+$/.test(p) && p !== '..' && p !== '.')) {
    return { folder: parts.slice(0, 2).join('/'), file: parts.slice(2).join('/') };
  }
  const cut = ref.lastIndexOf('/');
  return cut < 0 ? { folder: '.', file: ref } : { folder: ref.slice(0, cut + 1), file: ref.slice(cut + 1) };
}
