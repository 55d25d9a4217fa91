// Writing answers: JSON bodies and errors with the CORS headers every /v1 answer carries, so pages
// on any origin can call the gateway (it holds no cookies; an API key travels in a header).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApiError } from './errors.ts';

export const CORS_HEADERS = { 'Access-Control-Allow-Origin': '*' } as const;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    ...CORS_HEADERS,
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(payload)),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(payload);
}

export function sendError(res: ServerResponse, error: ApiError): void {
  sendJson(res, error.status, error.body(), error.headers);
}

/** Answers a CORS preflight: any origin, our methods, and whatever headers the page asks to send. */
export function sendPreflight(req: IncomingMessage, res: ServerResponse): void {
  const asked = req.headers['access-control-request-headers'];
  res.writeHead(204, {
    ...CORS_HEADERS,
    'Access-Control-Allow-Methods': 'GET, HEAD, POST, OPTIONS',
    // OpenAI's JS client sends several x-stainless-* headers; echoing the list admits them all.
    'Access-Control-Allow-Headers': typeof asked === 'string' && asked.length <= 2048 ? asked : 'Authorization, Content-Type',
    'Access-Control-Max-Age': '600',
    Vary: 'Access-Control-Request-Headers',
    'Content-Length': '0',
  });
  res.end();
}
