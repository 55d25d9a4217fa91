// Reads a request's JSON body under two limits: its size (checked on Content-Length before
// reading, and again as bytes arrive, for chunked bodies that announce nothing) and the time it
// may take to arrive, so a huge or trickling body cannot hold memory or a request open.
import type { IncomingMessage } from 'node:http';
import { ApiError } from './errors.ts';

export interface BodyLimits {
  maxBytes: number;
  timeoutMs: number;
}

/** Raised when the client went away mid-body: there is no one left to answer. */
export class ClientGone extends Error {}

// After these the connection is closed (Node does so once the answer is sent), since the rest of
// the body would otherwise have to be read to find where the next request starts.
const closing = { Connection: 'close' };

export async function readJsonBody(req: IncomingMessage, limits: BodyLimits): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) {
    throw new ApiError(400, `Content-Type must be application/json, got ${JSON.stringify(type.slice(0, 100)) || 'none'}.`, 'ERR_INVALID_ARGUMENT', null, closing);
  }
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(type)?.[1];
  if (charset && !/^utf-?8$/i.test(charset)) {
    throw new ApiError(400, `The body must be UTF-8 JSON, got charset ${charset.slice(0, 40)}.`, 'ERR_INVALID_ARGUMENT', null, closing);
  }
  const declared = Number(req.headers['content-length']);
  if (declared > limits.maxBytes) throw tooLarge(limits.maxBytes);
  const bytes = await collect(req, limits);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw malformed('the body is not valid UTF-8');
  }
  if (text.trim() === '') throw malformed('the body is empty');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw malformed((err as Error).message);
  }
}

function collect(req: IncomingMessage, limits: BodyLimits): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const done = (err: Error | null) => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('aborted', onGone).off('error', onGone).off('close', onClose);
      if (err) reject(err);
      else resolve(Buffer.concat(parts, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limits.maxBytes) return done(tooLarge(limits.maxBytes));
      parts.push(chunk);
    };
    const onEnd = () => done(null);
    const onGone = () => done(new ClientGone('the client closed the connection while sending the body'));
    const onClose = () => {
      if (!req.complete) onGone();
    };
    const timer = setTimeout(
      () => done(new ApiError(408, `The request body did not arrive within ${limits.timeoutMs} ms.`, 'request_timeout', null, closing)),
      limits.timeoutMs,
    );
    req.on('data', onData).on('end', onEnd).on('aborted', onGone).on('error', onGone).on('close', onClose);
  });
}

function tooLarge(maxBytes: number): ApiError {
  return new ApiError(413, `The request body exceeds ${maxBytes} bytes.`, 'request_too_large', null, closing);
}

function malformed(why: string): ApiError {
  return new ApiError(400, `We could not parse the JSON body of your request (${why.slice(0, 200)}).`, 'ERR_MALFORMED_JSON');
}
