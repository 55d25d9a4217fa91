// The optional bearer token. Both sides are hashed first so the comparison takes the same time
// whatever the key's length and however much of it a guess gets right.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ApiError } from './errors.ts';

const digest = (text: string) => createHash('sha256').update(text).digest();

/** A check that throws 401 unless the request carries `Authorization: Bearer <apiKey>`. */
export function bearerCheck(apiKey: string | undefined): (req: IncomingMessage) => void {
  if (apiKey === undefined) return () => {};
  const expected = digest(apiKey);
  return (req) => {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer +(.+)$/i.exec(header.trim()) : null;
    if (!match) {
      throw new ApiError(401, 'This gateway needs an API key: send "Authorization: Bearer <key>" (the key the gateway was started with).', 'invalid_api_key', null, { 'WWW-Authenticate': 'Bearer' });
    }
    if (!timingSafeEqual(digest(match[1]!), expected)) {
      throw new ApiError(401, 'Incorrect API key provided.', 'invalid_api_key', null, { 'WWW-Authenticate': 'Bearer' });
    }
  };
}
