// Identifier formats shared by every schema.
import { z } from 'zod';

export const PeerIdSchema = z.string().regex(/^[A-Za-z0-9_-]{4,64}$/, 'peerId: 4-64 of [A-Za-z0-9_-]');
export const NetworkSchema = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'network: 1-64 of [A-Za-z0-9._-]');

/** `org/name` (or a legacy bare `name`) as used on the Hugging Face hub; never a path with `..`. */
const HF_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;

export function isHuggingFaceId(ref: string): boolean {
  return HF_ID.test(ref) && !ref.includes('..');
}
