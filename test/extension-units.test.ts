// The extension's pieces that need no browser: the page's call table (replies matched by id,
// streams, tokens, aborts that fail at once and tell the engine, typed errors, the extension going
// away), the message guards, and when the service worker lets the engine contribute.
import { describe, expect, it } from 'vitest';
import { AigridError } from '../protocol/errors.ts';
import { engineConfig } from '../extension/src/background/contribution-control.ts';
import { Calls } from '../extension/src/page/calls.ts';
import { snoozeMs } from '../extension/src/background/permission-prompt.ts';
import { DEFAULT_SETTINGS, checkSettings, isPageMessage, isReplyMessage, pageOriginAllowed, toWireError, type PageMessage } from '../extension/src/protocol.ts';

function table() {
  const sent: PageMessage[] = [];
  return { calls: new Calls((m) => sent.push(m)), sent };
}

async function rejection(promise: Promise<unknown>): Promise<AigridError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(AigridError);
  return err as AigridError;
}

describe('the page side of calls', () => {
  it('posts a call with JSON params and resolves with its result', async () => {
    const { calls, sent } = table();
    const reply = calls.call('completions.create', { model: 'm', prompt: 'hi', skip: undefined });
    expect(sent).toEqual([{ type: 'call', id: 1, method: 'completions.create', params: { model: 'm', prompt: 'hi' } }]);
    calls.receive({ type: 'result', id: 1, value: { text: 'ok' } });
    expect(await reply).toEqual({ text: 'ok' });
    calls.receive({ type: 'result', id: 1, value: 'late' }); // settled calls ignore later replies
  });

  it('refuses params that are not JSON, and signals aborted before the call', async () => {
    const { calls, sent } = table();
    expect((await rejection(calls.call('generate', { prompt: 1n }))).code).toBe('ERR_INVALID_ARGUMENT');
    expect((await rejection(calls.call('models.list', undefined, { signal: AbortSignal.abort() }))).code).toBe('ERR_ABORTED');
    expect(sent).toEqual([]);
  });

  it('rebuilds errors as AigridErrors with their code', async () => {
    const { calls } = table();
    const reply = calls.call('models.list', undefined);
    calls.receive({ type: 'error', id: 1, error: { name: 'AigridError', code: 'ERR_UNKNOWN_MODEL', message: 'no model x' } });
    const err = await rejection(reply);
    expect(err).toMatchObject({ name: 'AigridError', code: 'ERR_UNKNOWN_MODEL', message: 'no model x' });
    expect(err.toJSON()).toEqual({ name: 'AigridError', code: 'ERR_UNKNOWN_MODEL', message: 'no model x' });
  });

  it('streams chunks in order and ends', async () => {
    const { calls } = table();
    const pending = calls.call('chat.completions.create', { stream: true }, { stream: true });
    calls.receive({ type: 'result', id: 1, value: null, stream: true });
    const stream = (await pending) as AsyncIterable<number> & { controller: AbortController };
    expect(stream.controller).toBeInstanceOf(AbortController);
    calls.receive({ type: 'chunk', id: 1, chunk: 1 });
    calls.receive({ type: 'chunk', id: 1, chunk: 2 });
    setTimeout(() => {
      calls.receive({ type: 'chunk', id: 1, chunk: 3 });
      calls.receive({ type: 'end', id: 1 });
    }, 10);
    const seen: number[] = [];
    for await (const c of stream) seen.push(c);
    expect(seen).toEqual([1, 2, 3]);
  });

  it('an abort during a stream fails it at once, drops later chunks and tells the engine', async () => {
    const { calls, sent } = table();
    const controller = new AbortController();
    const pending = calls.call('completions.create', { stream: true }, { stream: true, signal: controller.signal });
    calls.receive({ type: 'result', id: 1, value: null, stream: true });
    const stream = (await pending) as AsyncIterable<number>;
    for (const chunk of [1, 2, 3, 4]) calls.receive({ type: 'chunk', id: 1, chunk });
    const seen: number[] = [];
    const err = await rejection(
      (async () => {
        for await (const c of stream) {
          seen.push(c);
          if (seen.length === 2) controller.abort();
        }
      })(),
    );
    expect(err.code).toBe('ERR_ABORTED');
    expect(seen).toEqual([1, 2]);
    expect(sent.at(-1)).toEqual({ type: 'abort', id: 1 });
    calls.receive({ type: 'chunk', id: 1, chunk: 5 }); // ignored
  });

  it('leaving a stream\'s loop early aborts the call in the engine', async () => {
    const { calls, sent } = table();
    const pending = calls.call('completions.create', { stream: true }, { stream: true });
    calls.receive({ type: 'result', id: 1, value: null, stream: true });
    calls.receive({ type: 'chunk', id: 1, chunk: 'a' });
    for await (const _ of (await pending) as AsyncIterable<string>) break;
    expect(sent.at(-1)).toEqual({ type: 'abort', id: 1 });
  });

  it('an abort before the reply rejects at once; tokens go to onToken', async () => {
    const { calls, sent } = table();
    const controller = new AbortController();
    const tokens: number[] = [];
    const reply = calls.call('generate', { model: 'm', prompt: [1], maxTokens: 3 }, { signal: controller.signal, onToken: (t) => tokens.push(t) });
    expect(sent[0]).toMatchObject({ type: 'call', id: 1, tokens: true });
    calls.receive({ type: 'token', id: 1, token: 7, step: 0 });
    controller.abort();
    expect((await rejection(reply)).code).toBe('ERR_ABORTED');
    expect(tokens).toEqual([7]);
    expect(sent.at(-1)).toEqual({ type: 'abort', id: 1 });
  });

  it('fails every open call when the extension goes away', async () => {
    const { calls } = table();
    const whole = calls.call('models.list', undefined);
    const pending = calls.call('completions.create', { stream: true }, { stream: true });
    calls.receive({ type: 'result', id: 2, value: null, stream: true });
    const stream = (await pending) as AsyncIterable<unknown>;
    calls.disconnected();
    expect((await rejection(whole)).code).toBe('ERR_PEER_CLOSED');
    expect((await rejection((async () => { for await (const _ of stream); })())).code).toBe('ERR_PEER_CLOSED');
  });
});

describe('messages, errors and settings', () => {
  it('guards what crosses the boundary', () => {
    expect(isPageMessage({ type: 'call', id: 1, method: 'generate' })).toBe(true);
    expect(isPageMessage({ type: 'abort', id: 3 })).toBe(true);
    expect(isPageMessage({ type: 'call', id: 1, method: 'contribute' })).toBe(false);
    expect(isPageMessage({ type: 'call', id: 1.5, method: 'generate' })).toBe(false);
    expect(isPageMessage({ type: 'call', id: 1, method: 'generate', tokens: 'yes' })).toBe(false);
    expect(isPageMessage(null)).toBe(false);
    expect(isReplyMessage({ type: 'chunk', id: 2, chunk: {} })).toBe(true);
    expect(isReplyMessage({ type: 'keepalive' })).toBe(false);
  });

  it('sends any thrown value as {name, code, message}', () => {
    expect(toWireError(new AigridError('ERR_NO_ROUTE', 'gap'))).toEqual({ name: 'AigridError', code: 'ERR_NO_ROUTE', message: 'gap' });
    expect(toWireError(new TypeError('x is undefined'))).toEqual({ name: 'AigridError', code: 'ERR_INVALID_MESSAGE', message: 'x is undefined' });
    expect(toWireError('plain')).toEqual({ name: 'AigridError', code: 'ERR_INVALID_MESSAGE', message: 'plain' });
  });

  it('checks settings', () => {
    expect(checkSettings(DEFAULT_SETTINGS)).toBeNull();
    expect(checkSettings({ signalUrl: 'http://host/signal' })).toContain('ws://');
    expect(checkSettings({ network: 'a b' })).toContain('network');
    expect(checkSettings({ memoryBudgetMB: 0 })).toContain('memory');
  });

  it('contributes when on, and only while idle when asked to', () => {
    const s = { ...DEFAULT_SETTINGS, memoryBudgetMB: 512 };
    expect(engineConfig(s, false, 'idle').contribute).toBe(false);
    expect(engineConfig(s, true, 'active')).toEqual({ signalUrl: s.signalUrl, network: s.network, memoryBudgetMB: 512, contribute: true, onlyOnAC: false });
    const idleOnly = { ...s, onlyWhenIdle: true, onlyOnAC: true };
    expect(engineConfig(idleOnly, true, 'active').contribute).toBe(false);
    expect(engineConfig(idleOnly, true, 'idle').contribute).toBe(true);
    expect(engineConfig(idleOnly, true, 'locked')).toMatchObject({ contribute: true, onlyOnAC: true });
  });
});

describe('who may ask, and how long a dismissed prompt waits', () => {
  it('takes a call\'s gesture flag only as a boolean (the content script sets it)', () => {
    const call = { type: 'call', id: 1, method: 'models.list' };
    expect(isPageMessage({ ...call, gesture: true })).toBe(true);
    expect(isPageMessage({ ...call, gesture: 'yes' })).toBe(false);
    expect(isPageMessage({ ...call, gesture: 1 })).toBe(false);
  });

  it('admits https pages and plain-http pages of this machine only', () => {
    for (const origin of ['https://example.com', 'https://a.b:8443', 'http://localhost:3000', 'http://127.0.0.1:8787', 'http://127.1.2.3', 'http://[::1]:80', 'http://app.localhost']) {
      expect([origin, pageOriginAllowed(origin)]).toEqual([origin, true]);
    }
    for (const origin of ['http://example.com', 'http://192.168.1.2', 'http://localhost.evil.com', 'ftp://x', 'file:///', 'null', 'chrome-extension://abc']) {
      expect([origin, pageOriginAllowed(origin)]).toEqual([origin, false]);
    }
  });

  it('doubles the wait after each dismissal, from 30 s up to an hour', () => {
    expect([1, 2, 3, 4].map(snoozeMs)).toEqual([30_000, 60_000, 120_000, 240_000]);
    expect(snoozeMs(20)).toBe(3_600_000);
  });
});
