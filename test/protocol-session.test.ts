// The data plane's control frames as a hop receives them: stage roles only where they can hold,
// failure codes this version does not know mapped once, and bad JSON named, never thrown raw.
import { describe, expect, it } from 'vitest';
import { checkRoute, decodeControl, ReleaseSchema, SessionFailureSchema, SessionSetupSchema } from '../protocol/index.ts';

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return 'passed';
};

describe('session control frames', () => {
  it('allow embed only on a first stage at layer 0, and head only on the last', () => {
    const a = { peerId: 'peer-a', start: 0, end: 2 };
    const b = { peerId: 'peer-b', start: 2, end: 4 };
    expect(code(() => checkRoute([{ ...a, embed: true }, { ...b, head: true }], 0, 4))).toBe('passed');
    expect(code(() => checkRoute([a, { ...b, embed: true }]))).toBe('ERR_INVALID_ARGUMENT');
    expect(code(() => checkRoute([{ ...a, head: true }, b]))).toBe('ERR_INVALID_ARGUMENT');
    expect(code(() => checkRoute([{ ...b, embed: true }]))).toBe('ERR_INVALID_ARGUMENT');
    // Roles other than `true` are not part of the schema.
    const setup = { sessionId: '0123456789abcdef', modelId: 'm', client: 'client-a' };
    expect(code(() => decodeControl(SessionSetupSchema, json({ ...setup, hops: [{ ...a, embed: false }] }), 'session'))).toBe('ERR_FRAME_MALFORMED');
    expect(code(() => decodeControl(SessionSetupSchema, json({ ...setup, hops: [{ ...a, embed: 'yes' }] }), 'session'))).toBe('ERR_FRAME_MALFORMED');
  });

  it('map a failure code from a newer peer to ERR_UNKNOWN_CODE, and refuse oversize or non-JSON frames', () => {
    const failure = { sessionId: '0123456789abcdef', requestId: 1, peerId: 'peer-a', message: 'x' };
    expect(decodeControl(SessionFailureSchema, json({ ...failure, code: 'ERR_NO_ROUTE' }), 'fail').code).toBe('ERR_NO_ROUTE');
    expect(decodeControl(SessionFailureSchema, json({ ...failure, code: 'ERR_FROM_THE_FUTURE' }), 'fail').code).toBe('ERR_UNKNOWN_CODE');
    expect(code(() => decodeControl(SessionFailureSchema, json({ ...failure, code: 'x'.repeat(65) }), 'fail'))).toBe('ERR_FRAME_MALFORMED');
    expect(code(() => decodeControl(ReleaseSchema, new Uint8Array(64 * 1024 + 1), 'release'))).toBe('ERR_FRAME_MALFORMED');
    expect(code(() => decodeControl(ReleaseSchema, new Uint8Array([0xff, 0xfe]), 'release'))).toBe('ERR_FRAME_MALFORMED');
    expect(code(() => decodeControl(ReleaseSchema, json({ sessionId: 'not-hex' }), 'release'))).toBe('ERR_FRAME_MALFORMED');
  });
});
