import { describe, expect, it } from 'vitest';
import {
  ERROR_CODES,
  MAX_SIGNAL_FRAME_BYTES,
  parseClientMessage,
  parseServerMessage,
  PROTOCOL_VERSION,
  type Capabilities,
  type PeerInfo,
} from '../protocol/index.ts';
import { mulberry32 } from './helpers/random.ts';

const CAPS: Capabilities = {
  kind: 'browser',
  gpu: {
    vendor: 'nvidia',
    architecture: 'ada',
    device: '',
    description: 'RTX',
    isFallbackAdapter: false,
    features: ['shader-f16'],
    limits: { maxBufferSize: 2 ** 30 },
  },
  memoryBudgetMB: 4096,
  throughput: { gflops: 1200, backend: 'webgpu' },
  agent: 'Chrome',
};
const PEER: PeerInfo = { peerId: 'peer-a', capabilities: CAPS, joinedAt: 1_700_000_000_000 };
const CANDIDATE = { candidate: 'candidate:1 1 udp 1 1.2.3.4 5 typ host', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: null };

const CLIENT_VALID: Record<string, unknown> = {
  hello: { type: 'hello', protocolVersion: PROTOCOL_VERSION, peerId: 'peer-a', network: 'lab.1', capabilities: CAPS, publicKey: 'A'.repeat(43), signature: 'B'.repeat(86) },
  update: { type: 'update', capabilities: { ...CAPS, gpu: null } },
  offer: { type: 'signal', to: 'peer-b', data: { type: 'offer', sdp: 'v=0' } },
  answer: { type: 'signal', to: 'peer-b', data: { type: 'answer', sdp: 'v=0' } },
  candidate: { type: 'signal', to: 'peer-b', data: { type: 'candidate', candidate: CANDIDATE } },
  renegotiate: { type: 'signal', to: 'peer-b', data: { type: 'renegotiate', renegotiate: true } },
  decline: { type: 'decline', to: 'peer-b', reason: 'full' },
  ping: { type: 'ping', id: 0 },
};

const SERVER_VALID: Record<string, unknown> = {
  challenge: { type: 'challenge', nonce: 'n'.repeat(43) },
  welcome: {
    type: 'welcome',
    protocolVersion: PROTOCOL_VERSION,
    peerId: 'peer-a',
    network: 'lab',
    peers: [PEER],
    heartbeatMs: 5000,
    limits: { maxFrameBytes: 65536, messagesPerSecond: 50 },
  },
  join: { type: 'join', peer: PEER },
  update: { type: 'update', peer: PEER },
  leave: { type: 'leave', peerId: 'peer-a', reason: 'timeout' },
  signal: { type: 'signal', from: 'peer-a', data: { type: 'offer', sdp: 'v=0' } },
  decline: { type: 'decline', from: 'peer-a', reason: 'full' },
  glare: { type: 'glare', peerId: 'peer-a' },
  pong: { type: 'pong', id: 3, serverTime: 1 },
  error: { type: 'error', code: 'ERR_RATE_LIMITED', message: 'slow down', ref: 'ping' },
};

const CLIENT_INVALID: [string, unknown][] = [
  ['hello without peerId', { ...(CLIENT_VALID.hello as object), peerId: undefined }],
  ['hello with a short peerId', { ...(CLIENT_VALID.hello as object), peerId: 'abc' }],
  ['hello with a bad network', { ...(CLIENT_VALID.hello as object), network: 'a b' }],
  ['hello with a fractional version', { ...(CLIENT_VALID.hello as object), protocolVersion: 1.5 }],
  ['hello without a public key', { ...(CLIENT_VALID.hello as object), publicKey: undefined }],
  ['hello with a short signature', { ...(CLIENT_VALID.hello as object), signature: 'B'.repeat(85) }],
  ['policy with neither servers nor sources', { type: 'policy' }],
  ['policy listing too many servers', { type: 'policy', servers: Array.from({ length: 257 }, (_, i) => `peer-${i}`) }],
  ['policy with too many sources', { type: 'policy', sources: Array.from({ length: 65 }, (_, i) => `https://m${i}.example/`) }],
  ['withdraw with a bad model id', { type: 'withdraw', modelId: 'a model' }],
  ['verdict with too many verdicts', { type: 'verdict', modelId: 'm', verdicts: Array.from({ length: 17 }, () => ({ peerId: 'peer-a', result: 'verified' })) }],
  ['policy with an empty source prefix', { type: 'policy', sources: [''] }],
  ['verdict with an unknown result', { type: 'verdict', modelId: 'm', verdicts: [{ peerId: 'peer-a', result: 'great' }] }],
  ['route around an empty route', { type: 'route', requestId: 1, modelId: 'm', around: [], replace: 'peer-a' }],
  ['hello with an unknown kind', { ...(CLIENT_VALID.hello as object), capabilities: { ...CAPS, kind: 'toaster' } }],
  ['update with too many limits', { type: 'update', capabilities: { ...CAPS, gpu: { ...CAPS.gpu, limits: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, i])) } } }],
  ['update with negative memory', { type: 'update', capabilities: { ...CAPS, memoryBudgetMB: -1 } }],
  ['signal with an unknown data type', { type: 'signal', to: 'peer-b', data: { type: 'transceiverRequest' } }],
  ['signal with an oversize sdp', { type: 'signal', to: 'peer-b', data: { type: 'offer', sdp: 'x'.repeat(60_001) } }],
  ['signal to a bad peerId', { type: 'signal', to: 'no/slash', data: { type: 'offer', sdp: '' } }],
  ['renegotiate false', { type: 'signal', to: 'peer-b', data: { type: 'renegotiate', renegotiate: false } }],
  ['decline with a long reason', { type: 'decline', to: 'peer-b', reason: 'x'.repeat(257) }],
  ['ping with a negative id', { type: 'ping', id: -1 }],
  ['ping with a string id', { type: 'ping', id: '1' }],
  ['an array', [CLIENT_VALID.ping]],
  ['a number', 42],
  ['null', null],
];

const CODES = new Set<string>(ERROR_CODES);

describe('signaling protocol schemas', () => {
  for (const [name, value] of Object.entries(CLIENT_VALID)) {
    it(`accepts a valid client ${name}`, () => {
      const result = parseClientMessage(JSON.stringify(value));
      expect(result).toMatchObject({ ok: true });
      // Binary frames are parsed the same way.
      expect(parseClientMessage(new TextEncoder().encode(JSON.stringify(value))).ok).toBe(true);
    });
  }

  for (const [name, value] of Object.entries(SERVER_VALID)) {
    it(`accepts a valid server ${name}`, () => {
      expect(parseServerMessage(JSON.stringify(value))).toMatchObject({ ok: true });
    });
  }

  it('strips unknown keys for forward compatibility', () => {
    const result = parseClientMessage(JSON.stringify({ type: 'ping', id: 1, extra: 'x' }));
    expect(result).toEqual({ ok: true, message: { type: 'ping', id: 1 } });
  });

  for (const [name, value] of CLIENT_INVALID) {
    it(`rejects ${name} as ERR_INVALID_MESSAGE`, () => {
      const result = parseClientMessage(JSON.stringify(value));
      expect(result).toMatchObject({ ok: false, code: 'ERR_INVALID_MESSAGE' });
    });
  }

  it('rejects server messages that break their schema', () => {
    expect(parseServerMessage(JSON.stringify({ type: 'leave', peerId: 'peer-a', reason: 'bored' }))).toMatchObject({ code: 'ERR_INVALID_MESSAGE' });
    expect(parseServerMessage(JSON.stringify({ ...(SERVER_VALID.welcome as object), heartbeatMs: 0 }))).toMatchObject({ code: 'ERR_INVALID_MESSAGE' });
    expect(parseServerMessage(JSON.stringify({ type: 'hello' }))).toMatchObject({ code: 'ERR_UNKNOWN_TYPE' });
    expect(parseServerMessage('{')).toMatchObject({ code: 'ERR_MALFORMED_JSON' });
  });

  it('rejects non-JSON as ERR_MALFORMED_JSON', () => {
    for (const frame of ['', '{', 'hello', '{"type":"ping",}', "{'type':'ping'}"]) {
      expect(parseClientMessage(frame)).toMatchObject({ ok: false, code: 'ERR_MALFORMED_JSON' });
    }
    expect(parseClientMessage(new Uint8Array([0x7b, 0xc3, 0x28, 0x7d]))).toMatchObject({ code: 'ERR_MALFORMED_JSON' });
  });

  it('rejects unknown or missing types as ERR_UNKNOWN_TYPE', () => {
    for (const value of [{}, { type: 'welcome' }, { type: 'PING', id: 1 }, { type: 7 }, { type: null }, { type: '__proto__' }]) {
      expect(parseClientMessage(JSON.stringify(value))).toMatchObject({ ok: false, code: 'ERR_UNKNOWN_TYPE' });
    }
  });

  it('rejects frames over the size cap as ERR_FRAME_TOO_LARGE', () => {
    const big = JSON.stringify({ type: 'decline', to: 'peer-b', reason: 'x'.repeat(MAX_SIGNAL_FRAME_BYTES) });
    expect(parseClientMessage(big)).toMatchObject({ ok: false, code: 'ERR_FRAME_TOO_LARGE' });
    // The cap counts UTF-8 bytes, not characters.
    const wide = JSON.stringify({ type: 'ping', id: 1, pad: 'é'.repeat(MAX_SIGNAL_FRAME_BYTES / 2) });
    expect(parseClientMessage(wide)).toMatchObject({ code: 'ERR_FRAME_TOO_LARGE' });
    expect(parseClientMessage(JSON.stringify(CLIENT_VALID.ping), 5)).toMatchObject({ code: 'ERR_FRAME_TOO_LARGE' });
  });

  it('rejects another protocol version as ERR_PROTOCOL_VERSION', () => {
    for (const protocolVersion of [0, PROTOCOL_VERSION + 1, -1]) {
      const frame = JSON.stringify({ ...(CLIENT_VALID.hello as object), protocolVersion });
      expect(parseClientMessage(frame)).toMatchObject({ ok: false, code: 'ERR_PROTOCOL_VERSION', ref: 'hello' });
    }
  });
});


function fuzzer(seed: number) {
  const rand = mulberry32(seed);
  const int = (n: number): number => Math.floor(rand() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const valid = Object.values(CLIENT_VALID).map((v) => JSON.stringify(v));
  const odd = [1e308, -1e308, 2 ** 53 + 1, -0, 0.1, NaN, Infinity, '', '\u0000', '\ud800', true, null, [], {}, 'peer-b', 'hello'];

  function randomValue(depth: number): unknown {
    switch (depth > 4 ? int(4) : int(7)) {
      case 0:
        return pick(odd);
      case 1:
        return rand() * 10 ** int(400) * (rand() < 0.5 ? -1 : 1);
      case 2:
        return String.fromCharCode(...Array.from({ length: int(20) }, () => int(0x10000)));
      case 3:
        return int(2) === 0;
      case 4:
        return Array.from({ length: int(5) }, () => randomValue(depth + 1));
      default: {
        const obj: Record<string, unknown> = {};
        for (let i = int(6); i > 0; i--) obj[pick(['type', 'to', 'data', 'id', 'peerId', 'sdp', '__proto__', 'x'])] = randomValue(depth + 1);
        if (rand() < 0.5) obj.type = pick(['hello', 'update', 'signal', 'decline', 'ping', 'offer']);
        return obj;
      }
    }
  }

  /** Replaces one field somewhere in a valid message with a value of another type. */
  function wrongType(): string {
    const value = JSON.parse(pick(valid)) as Record<string, unknown>;
    let node: Record<string, unknown> = value;
    for (let d = 0; d < 3; d++) {
      const keys = Object.keys(node);
      const key = pick(keys);
      const child = node[key];
      if (d < 2 && child && typeof child === 'object' && !Array.isArray(child) && rand() < 0.6) node = child as Record<string, unknown>;
      else {
        node[key] = randomValue(3);
        break;
      }
    }
    return JSON.stringify(value);
  }

  function mutateText(frame: string): string {
    let s = frame;
    for (let n = 1 + int(4); n > 0; n--) {
      const at = int(s.length + 1);
      const op = int(3);
      if (op === 0) s = s.slice(0, at) + String.fromCharCode(int(0x10000)) + s.slice(at + 1);
      else if (op === 1) s = s.slice(0, at) + pick(['{', '}', '"', ',', ':', '[', '\\', '1e999', 'null']) + s.slice(at);
      else s = s.slice(0, at) + s.slice(at + 1 + int(4));
    }
    return s;
  }

  function mutateBytes(frame: string): Uint8Array {
    const bytes = new TextEncoder().encode(frame);
    for (let n = 1 + int(4); n > 0; n--) {
      const at = int(bytes.length);
      bytes[at] = (bytes[at] ?? 0) ^ (1 << int(8));
    }
    return bytes;
  }

  function deepNesting(): string {
    const depth = 1 + int(10_000);
    const open = rand() < 0.5 ? '[' : '{"a":';
    const close = open === '[' ? ']' : '}';
    return `{"type":"ping","id":${open.repeat(depth)}1${close.repeat(rand() < 0.8 ? depth : int(depth))}}`;
  }

  return (): string | Uint8Array => {
    switch (int(7)) {
      case 0:
        return mutateText(pick(valid));
      case 1:
        return mutateBytes(pick(valid));
      case 2:
        return JSON.stringify(randomValue(0)) ?? 'undefined';
      case 3:
        return deepNesting();
      case 4:
        return wrongType();
      case 5:
        return Uint8Array.from({ length: int(64) }, () => int(256));
      default:
        return pick(valid).replace(/\d+/, `${int(10)}e${int(400)}`);
    }
  };
}

describe('signaling protocol fuzz', () => {
  it('never throws and always names a known error code', () => {
    const seeds = [1, 42, 0xdecaf];
    let rejected = 0;
    let total = 0;
    for (const seed of seeds) {
      const next = fuzzer(seed);
      for (let i = 0; i < 4000; i++) {
        const frame = next();
        let result: ReturnType<typeof parseClientMessage>;
        try {
          result = parseClientMessage(frame);
        } catch (err) {
          throw new Error(`seed ${seed} case ${i} threw ${String(err)} on ${String(frame).slice(0, 200)}`);
        }
        total++;
        if (!result.ok) {
          rejected++;
          expect(CODES.has(result.code), `seed ${seed} case ${i}: ${result.code}`).toBe(true);
          expect(typeof result.message).toBe('string');
        }
      }
    }
    expect(total).toBe(12_000);
    // Most mutations must be rejected; some stay valid (e.g. a changed digit inside an sdp).
    expect(rejected).toBeGreaterThan(total / 2);
  });
});
