// Fuzz of what a peer runs on bytes from another peer: the protocol's frame decoders, frame and
// chunk reassembly (FrameReassembler, as PeerLink feeds it), and a real HopServer answering
// session, tokens, forward, signed, release, ask and fail frames on a real shard (tiny-llama on
// the CPU) behind a mesh that records what it would send. Seeded: a failure names the seed, the
// case and its input; FUZZ_SEED=<seed> replays a run.
import { describe, expect, it, afterAll } from 'vitest';
import wrtc from '@roamhq/wrtc';
import { Assignment } from '../client/grid/assignment.ts';
import { HopServer } from '../client/grid/hop-server.ts';
import { HopSessions } from '../client/grid/hop-sessions.ts';
import { modelSpecFromCheckpoint } from '../client/grid/model-spec.ts';
import type { Mesh } from '../client/mesh/mesh.ts';
import { PeerLink } from '../client/mesh/peer-link.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openModelNode } from '../client/model/checkpoint/node.ts';
import {
  AigridError,
  contentRoot,
  decodeActivation,
  decodeControl,
  decodeHidden,
  decodeLogits,
  decodeTokenIds,
  encodeControl,
  encodeFrame,
  encodeHidden,
  encodeLogits,
  encodeTokenIds,
  FrameAskSchema,
  FrameReassembler,
  FrameType,
  frameContent,
  MAX_LEAF_BYTES,
  packFrames,
  peekIds,
  ReleaseSchema,
  ServingFrame,
  SessionFailureSchema,
  SessionSetupSchema,
  SignedLeafSchema,
  signLeaf,
  signTicket,
  unwrapSigned,
  wrapSigned,
  type ErrorCode,
  type Frame,
  type SessionSetup,
  type SignedLeaf,
} from '../protocol/index.ts';
import { modelDir } from './fixtures/index.ts';
import { testIdentity } from './helpers/identities.ts';
import { caseRandom, concat, fuzzSeed, Mutator, settledHeap, show } from './helpers/mutate.ts';

const SEED = fuzzSeed(0xf2a3e5);
const DECODER_CASES = 36_000;
const REASSEMBLY_CASES = 14_000;
const LINK_CASES = 2_000;
const HOP_CASES = 12_000;
/** One call on one frame of at most a few hundred KiB takes well under a millisecond; this is a hang (with room for GC pauses and a busy machine). */
const SLOW_CALL_MS = 1500;

/** A case that broke a rule: the seed, the case, what was done and the input, so it replays. */
function failCase(where: string, index: number, m: Mutator, input: string | Uint8Array, why: string): never {
  throw new Error(`${where} case ${index} (FUZZ_SEED=${SEED}): ${why}\n  mutations: ${m.steps.join('; ')}\n  input: ${show(input)}`);
}

/** Runs fn; anything thrown must be an AigridError with one of `codes`; too slow a call fails too. */
function expectNamed(where: string, index: number, m: Mutator, input: Uint8Array, codes: readonly ErrorCode[], fn: () => unknown): 'ok' | ErrorCode {
  const started = performance.now();
  let outcome: 'ok' | ErrorCode = 'ok';
  try {
    fn();
  } catch (err) {
    if (!(err instanceof AigridError)) failCase(where, index, m, input, `threw ${String((err as Error)?.stack ?? err)}`);
    if (!codes.includes(err.code)) failCase(where, index, m, input, `threw ${err.code} (${err.message}), not one of ${codes.join(', ')}`);
    outcome = err.code;
  }
  const ms = performance.now() - started;
  if (ms > SLOW_CALL_MS) failCase(where, index, m, input, `took ${ms.toFixed(0)} ms`);
  return outcome;
}

const client = testIdentity('fuzz-client');
const prev = testIdentity('fuzz-prev');
const hop = testIdentity('fuzz-hop');
const next = testIdentity('fuzz-next');
const stranger = testIdentity('fuzz-stranger');
/** The key a coordinator signs route tickets with. */
const coordinator = testIdentity('fuzz-coordinator');
const MODEL = 'tiny-llama';
const H = 64;

const sid = (rand: () => number) => Array.from({ length: 16 }, () => Math.floor(rand() * 16).toString(16)).join('');

/** Valid frames of every kind a peer receives, to mutate. */
function corpus(rand: () => number): { name: string; bytes: Uint8Array }[] {
  const header = { sessionId: sid(rand), requestId: Math.floor(rand() * 2 ** 32), startPos: Math.floor(rand() * 100), hop: 1, layerStart: 2, layerEnd: 4 };
  const rows = 1 + Math.floor(rand() * 4);
  const values = Float32Array.from({ length: rows * H }, () => (rand() - 0.5) * 4);
  const big = Float32Array.from({ length: rows * H }, (_, i) => (i === 0 ? 1e6 : rand())); // goes as f32
  const leaf = new TextEncoder().encode(JSON.stringify({ network: 'net', modelId: MODEL, sessionId: header.sessionId, client: client.peerId, peerId: prev.peerId, publicKey: prev.publicKey, start: 0, end: 2, requestId: 1, input: 'A'.repeat(43), output: 'B'.repeat(43), signature: 'C'.repeat(86) }));
  const hidden = encodeHidden(header, values, rows, H);
  return [
    { name: 'hidden f16', bytes: hidden },
    { name: 'hidden f32', bytes: encodeHidden(header, big, rows, H) },
    { name: 'tokens', bytes: encodeTokenIds({ ...header, hop: 0, layerStart: 0 }, Uint32Array.from({ length: rows }, () => Math.floor(rand() * 256))) },
    { name: 'logits', bytes: encodeLogits({ ...header, tokens: rows }, Float32Array.from({ length: 256 }, () => rand())) },
    { name: 'signed', bytes: wrapSigned(ServingFrame.forward, leaf, hidden) },
    { name: 'setup', bytes: encodeControl({ sessionId: header.sessionId, modelId: MODEL, hops: [{ peerId: prev.peerId, start: 0, end: 2 }, { peerId: hop.peerId, start: 2, end: 4, head: true }], client: client.peerId }) },
    { name: 'fail', bytes: encodeControl({ sessionId: header.sessionId, requestId: 3, peerId: next.peerId, code: 'ERR_NO_ROUTE', message: 'x', blame: prev.peerId }) },
    { name: 'release', bytes: encodeControl({ sessionId: header.sessionId }) },
    { name: 'ask', bytes: encodeControl({ sessionId: header.sessionId, requestId: 7 }) },
  ];
}

const ACTIVATION_CODES: ErrorCode[] = ['ERR_FRAME_MALFORMED', 'ERR_SHAPE_MISMATCH'];
const HIDDEN_CODES: ErrorCode[] = [...ACTIVATION_CODES, 'ERR_INVALID_ARGUMENT'];
const CONTROL_CODES: ErrorCode[] = ['ERR_FRAME_MALFORMED'];
const REASSEMBLY_CODES: ErrorCode[] = ['ERR_FRAME_MALFORMED', 'ERR_FRAME_OVERRUN', 'ERR_FRAME_INTERLEAVED', 'ERR_FRAME_TOO_LARGE'];

describe('fuzz: peer frame decoders', () => {
  it(`decoders answer ${DECODER_CASES} mutated frames with values or named errors`, async () => {
    const started = performance.now();
    const heap = await settledHeap();
    const outcomes = new Map<string, number>();
    const count = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    const digests: Promise<unknown>[] = [];
    // Bases made once from the seed (each case still draws its own mutations).
    const bases = Array.from({ length: 16 }, (_, k) => corpus(caseRandom(SEED ^ 0x7777, k))).flat();
    for (let i = 0; i < DECODER_CASES; i++) {
      const rand = caseRandom(SEED, i);
      const m = new Mutator(rand);
      const base = m.pick(bases);
      let input: Uint8Array;
      if (base.name === 'setup' || base.name === 'fail' || base.name === 'release' || base.name === 'ask') {
        const text = m.json(JSON.parse(new TextDecoder().decode(base.bytes)));
        input = typeof text === 'string' ? new TextEncoder().encode(text) : text;
      } else if (base.name === 'signed' && m.chance(0.3)) {
        // The leaf's JSON mutated inside an intact wrapper.
        const w = unwrapSigned(base.bytes)!;
        const text = m.json(JSON.parse(new TextDecoder().decode(w.leaf)));
        input = wrapSigned(w.type, typeof text === 'string' ? new TextEncoder().encode(text) : text, w.payload);
      } else {
        input = m.bytes(base.bytes);
      }
      count(`${base.name}:${expectNamed('decodeHidden', i, m, input, HIDDEN_CODES, () => decodeHidden(input))}`);
      expectNamed('decodeActivation', i, m, input, ACTIVATION_CODES, () => decodeActivation(input));
      expectNamed('decodeTokenIds', i, m, input, ACTIVATION_CODES, () => decodeTokenIds(input));
      expectNamed('decodeLogits', i, m, input, ACTIVATION_CODES, () => decodeLogits(input));
      for (const [schema, what] of [[SessionSetupSchema, 'session'], [SessionFailureSchema, 'fail'], [ReleaseSchema, 'release'], [FrameAskSchema, 'ask']] as const) {
        count(`control ${what}:${expectNamed(`decodeControl ${what}`, i, m, input, CONTROL_CODES, () => decodeControl(schema, input, what))}`);
      }
      // These never throw: they answer null / undefined for what is not theirs.
      expectNamed('peekIds', i, m, input, [], () => peekIds(input));
      let signed: ReturnType<typeof unwrapSigned>;
      expectNamed('unwrapSigned', i, m, input, [], () => (signed = unwrapSigned(input)));
      if (signed) {
        const s = signed;
        if (s.leaf.byteLength > MAX_LEAF_BYTES || 5 + s.leaf.byteLength + s.payload.byteLength !== input.byteLength) failCase('unwrapSigned', i, m, input, 'split does not add up');
        count(`leaf:${expectNamed('decodeControl leaf', i, m, input, CONTROL_CODES, () => decodeControl(SignedLeafSchema, s.leaf, 'leaf', MAX_LEAF_BYTES))}`);
        expectNamed('decodeHidden signed', i, m, input, HIDDEN_CODES, () => decodeHidden(s.payload));
      }
      expectNamed('frameContent', i, m, input, [], () => frameContent(input));
      if (i % 16 === 0) digests.push(contentRoot(input).catch((err: unknown) => failCase('contentRoot', i, m, input, `rejected ${String(err)}`)));
      if (i % 2000 === 0) await Promise.all(digests.splice(0));
    }
    await Promise.all(digests);
    // Mutations must reach past the first checks: some of each kind still decode, most do not.
    for (const kind of ['hidden f16', 'hidden f32']) {
      expect(outcomes.get(`${kind}:ok`) ?? 0, kind).toBeGreaterThan(50);
      expect(outcomes.get(`${kind}:ERR_SHAPE_MISMATCH`) ?? 0, kind).toBeGreaterThan(50);
      expect(outcomes.get(`${kind}:ERR_FRAME_MALFORMED`) ?? 0, kind).toBeGreaterThan(50);
    }
    expect(outcomes.get('hidden f16:ERR_INVALID_ARGUMENT') ?? 0).toBeGreaterThan(10); // non-finite values
    for (const what of ['session', 'fail', 'release', 'ask']) expect(outcomes.get(`control ${what}:ok`) ?? 0, what).toBeGreaterThan(50);
    expect(outcomes.get('leaf:ok') ?? 0).toBeGreaterThan(50);
    expect(outcomes.get('leaf:ERR_FRAME_MALFORMED') ?? 0).toBeGreaterThan(50);
    const grown = (await settledHeap()) - heap;
    console.log(`decoders: ${DECODER_CASES} cases in ${(performance.now() - started).toFixed(0)} ms, heap ${(grown / 2 ** 20).toFixed(1)} MiB after (seed ${SEED})`);
    expect(grown).toBeLessThan(64 * 2 ** 20);
  });

  it(`the reassembler takes ${REASSEMBLY_CASES} mutated chunk runs: frames or named errors, and recovers after each`, () => {
    const started = performance.now();
    const outcomes = { frames: 0, errors: 0, recovered: 0 };
    const r = new FrameReassembler(1 << 20);
    for (let i = 0; i < REASSEMBLY_CASES; i++) {
      const rand = caseRandom(SEED ^ 0x5a5a, i);
      const m = new Mutator(rand);
      // A valid run: one frame in chunks, or several whole frames packed into one message.
      const chunkBytes = 13 + m.int(400);
      const payload = m.noise(m.int(1200));
      const type = 1 + m.int(255);
      const messages: Uint8Array[] = m.chance(0.3)
        ? [packFrames(Array.from({ length: 1 + m.int(5) }, (_, k) => encodeFrame(type, k, payload.subarray(0, m.int(60)), 4096)[0]!))]
        : encodeFrame(type, m.int(2 ** 32), payload, chunkBytes);
      const runs = messages.map((msg) => (m.chance(0.3) ? m.bytes(msg) : msg));
      if (m.chance(0.1)) runs.splice(m.int(runs.length + 1), 0, m.bytes(messages[m.int(messages.length)]!)); // an extra, stray chunk
      if (m.chance(0.1)) runs.splice(m.int(runs.length), 1); // a lost chunk
      const shown = concat(...runs);
      for (const msg of runs) {
        const frames: Frame[] = [];
        const got = expectNamed('pushMessage', i, m, shown, REASSEMBLY_CODES, () => r.pushMessage(msg, (f) => frames.push(f)));
        for (const f of frames) {
          if (f.payload.byteLength > r.maxFrameBytes || f.type < 1 || f.type > 255) failCase('pushMessage', i, m, shown, `delivered a bad frame (type ${f.type}, ${f.payload.byteLength} bytes)`);
        }
        outcomes.frames += frames.length;
        if (got !== 'ok') outcomes.errors++;
        if (r.heldBytes > r.maxFrameBytes) failCase('pushMessage', i, m, shown, `holds ${r.heldBytes} bytes`);
      }
      if (r.pending || m.chance(0.05)) {
        // After whatever came, a fresh frame gets through once the half frame is given up: a bad
        // chunk starts afresh, and a half frame is refused at the next frame's first chunk.
        const fresh = encodeFrame(FrameType.data, 0xabc0 + (i % 16), Uint8Array.of(1, 2, 3), 64)[0]!;
        let frame: Frame | null = null;
        try {
          frame = r.push(fresh);
        } catch (err) {
          if (!(err instanceof AigridError) || err.code !== 'ERR_FRAME_INTERLEAVED') failCase('recovery', i, m, shown, `threw ${String(err)}`);
          frame = r.push(fresh);
        }
        if (!frame || frame.payload.join() !== '1,2,3') failCase('recovery', i, m, shown, 'a valid frame after the run was not delivered');
        outcomes.recovered++;
      }
    }
    console.log(`reassembler: ${REASSEMBLY_CASES} runs in ${(performance.now() - started).toFixed(0)} ms: ${JSON.stringify(outcomes)}`);
    expect(outcomes.frames).toBeGreaterThan(REASSEMBLY_CASES / 2);
    expect(outcomes.errors).toBeGreaterThan(REASSEMBLY_CASES / 10);
  });

  it(`a PeerLink turns ${LINK_CASES} mutated channel messages into frame and frameError events, never a throw`, () => {
    const link = new PeerLink({ remoteId: stranger.peerId, initiator: false, wrtc, connectTimeoutMs: 60_000 });
    const seen = { frames: 0, errors: 0 };
    link.on('frame', () => seen.frames++);
    link.on('frameError', (err) => {
      if (!(err instanceof AigridError)) throw new Error(`frameError with ${String(err)}`);
      seen.errors++;
    });
    link.on('close', () => {});
    const onChunk = (link as unknown as { onChunk(chunk: Uint8Array): void }).onChunk.bind(link);
    try {
      for (let i = 0; i < LINK_CASES; i++) {
        const m = new Mutator(caseRandom(SEED ^ 0x1111, i));
        const frames = Array.from({ length: 1 + m.int(4) }, (_, k) => encodeFrame(m.pick([FrameType.data, ServingFrame.forward, ServingFrame.fail, FrameType.pong]), k, Uint8Array.from({ length: m.int(40) }, () => m.int(256)), 4096)[0]!);
        const msg = m.chance(0.5) ? packFrames(frames) : frames[0]!;
        const input = m.chance(0.7) ? m.bytes(msg) : msg;
        expectNamed('PeerLink.onChunk', i, m, input, [], () => onChunk(input));
      }
    } finally {
      link.destroy();
    }
    expect(link.closed).toBe(true);
    expect(seen.frames).toBeGreaterThan(LINK_CASES / 4);
    expect(seen.errors).toBeGreaterThan(LINK_CASES / 10);
  });
});

/** A HopServer on a real tiny-llama shard behind a mesh that records instead of sending. */
async function hopServer() {
  const sent: { to: string; type: number; payload: Uint8Array }[] = [];
  let sends = 0;
  const byType: Record<number, number> = {};
  const warnings: unknown[] = [];
  const listeners: ((s: { to: string; type: number; payload: Uint8Array }) => void)[] = [];
  const mesh = {
    peerId: hop.peerId,
    network: 'net',
    identity: hop,
    signaling: { serverKey: coordinator.publicKey },
    send: async (to: string, type: number, payload: Uint8Array) => {
      sends++;
      byType[type] = (byType[type] ?? 0) + 1;
      const s = { to, type, payload };
      sent.push(s);
      if (sent.length > 256) sent.shift();
      for (const l of listeners) l(s);
    },
    // The next hop is reachable unless it is the stranger.
    connect: async (peerId: string) => {
      if (peerId === stranger.peerId) throw new AigridError('ERR_CONNECT_TIMEOUT', `no link to ${peerId}`);
    },
    hold: () => () => {},
  } as unknown as Mesh;
  const dir = modelDir(MODEL);
  const spec = modelSpecFromCheckpoint(await openModelNode(dir), { source: dir, modelId: MODEL, light: true });
  const assignment = new Assignment(spec, 0, 4, checkpointOpener(openModelNode, { cache: false }), { backend: 'cpu' }, () => {}, { embed: true, head: true });
  await assignment.ready;
  const sessions = new HopSessions(60_000);
  const server = new HopServer(mesh, sessions, { assignmentOf: (id) => (id === MODEL ? assignment : undefined), warn: (err) => warnings.push(err) }, { perClient: 512, total: 512 });
  return {
    server,
    sessions,
    assignment,
    sent,
    byType,
    warnings,
    get sends() {
      return sends;
    },
    waitSend: (match: (s: { to: string; type: number; payload: Uint8Array }) => boolean, ms: number) =>
      new Promise<{ to: string; type: number; payload: Uint8Array }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching send within ${ms} ms`)), ms);
        listeners.push((s) => {
          if (match(s)) {
            clearTimeout(timer);
            resolve(s);
          }
        });
      }),
    close() {
      sessions.close();
      assignment.destroy();
    },
  };
}

describe('fuzz: a HopServer on a real shard', () => {
  let h: Awaited<ReturnType<typeof hopServer>> | undefined;
  afterAll(() => h?.close());

  it(`answers ${HOP_CASES} mutated serving frames without a throw or a hang, and serves afterwards`, async () => {
    const started = performance.now();
    h = await hopServer();
    const hs = h;
    const heap = await settledHeap();
    const routes: Record<string, (sessionId: string) => SessionSetup> = {
      // Light, one hop: tokens in, logits out.
      light: (sessionId) => ({ sessionId, modelId: MODEL, hops: [{ peerId: hop.peerId, start: 0, end: 4, embed: true, head: true }], client: client.peerId }),
      // Hop 1 of two: signed forward frames from prev, results to the client.
      second: (sessionId) => ({ sessionId, modelId: MODEL, hops: [{ peerId: prev.peerId, start: 0, end: 2 }, { peerId: hop.peerId, start: 2, end: 4 }], client: client.peerId }),
      // Hop 0 of two: hidden states from the client, forward to next.
      first: (sessionId) => ({ sessionId, modelId: MODEL, hops: [{ peerId: hop.peerId, start: 0, end: 2 }, { peerId: next.peerId, start: 2, end: 4 }], client: client.peerId }),
    };
    const kinds = Object.keys(routes);
    const live: { kind: string; sessionId: string; pos: number }[] = [];
    const setupPromises: Promise<void>[] = [];
    const stats = new Map<string, number>();
    const count = (key: string) => stats.set(key, (stats.get(key) ?? 0) + 1);
    const sender = (m: Mutator, right: string) => (m.chance(0.9) ? right : m.pick([client.peerId, prev.peerId, next.peerId, stranger.peerId]));

    for (let i = 0; i < HOP_CASES; i++) {
      const rand = caseRandom(SEED ^ 0x4040, i);
      const m = new Mutator(rand);
      const kind = m.pick(['setup', 'setup', 'input', 'input', 'input', 'input', 'release', 'ask', 'fail', 'random']);
      const target = live.length > 0 && m.chance(0.9) ? m.pick(live) : { kind: m.pick(kinds), sessionId: sid(rand), pos: 0 };
      const mutate = m.chance(0.6);
      let input: Uint8Array = new Uint8Array();
      let run: () => unknown;
      count(`${kind}${mutate ? ' mutated' : ''}`);
      if (kind === 'setup') {
        const fresh = { kind: m.pick(kinds), sessionId: sid(rand), pos: 0 };
        const setup = routes[fresh.kind]!(fresh.sessionId);
        // Now and then the range is the coordinator's: the setup carries its ticket, checked before the session opens.
        hs.assignment.ticketed = m.chance(0.25);
        if (hs.assignment.ticketed) {
          const hops = setup.hops.map(({ peerId, start, end }) => ({ peerId, start, end }));
          setup.ticket = await signTicket(coordinator, { network: 'net', modelId: MODEL, client: client.peerId, hops, expires: Date.now() + 60_000 });
        }
        const text = mutate ? m.json(setup) : JSON.stringify(setup);
        input = typeof text === 'string' ? new TextEncoder().encode(text) : text;
        if (!mutate) live.push(fresh);
        const from = sender(m, client.peerId);
        run = () => setupPromises.push(hs.server.onSetup(from, input));
      } else if (kind === 'input') {
        const { sessionId } = target;
        const rows = 1 + m.int(3);
        const startPos = m.chance(0.7) ? target.pos : m.int(300);
        const requestId = m.int(1000);
        if (target.kind === 'light') {
          input = encodeTokenIds({ sessionId, requestId, startPos, hop: 0, layerStart: 0, layerEnd: 4 }, Uint32Array.from({ length: rows }, () => m.int(256)));
          if (mutate) input = m.bytes(input);
          const from = sender(m, client.peerId);
          run = () => hs.server.onInput(from, m.chance(0.9) ? ServingFrame.tokens : ServingFrame.forward, input);
        } else if (target.kind === 'first') {
          input = encodeHidden({ sessionId, requestId, startPos, hop: 0, layerStart: 0, layerEnd: 2 }, Float32Array.from({ length: rows * H }, () => rand() - 0.5), rows, H);
          if (mutate) input = m.bytes(input);
          const from = sender(m, client.peerId);
          run = () => hs.server.onInput(from, m.chance(0.9) ? ServingFrame.forward : ServingFrame.tokens, input);
        } else {
          const payload = encodeHidden({ sessionId, requestId, startPos, hop: 1, layerStart: 2, layerEnd: 4 }, Float32Array.from({ length: rows * H }, () => rand() - 0.5), rows, H);
          const leaf = await signLeaf(prev, { network: 'net', modelId: MODEL, sessionId, client: client.peerId, start: 0, end: 2, requestId }, new Uint8Array(32), await contentRoot(payload));
          const leafBytes = encodeControl(leaf);
          const how = m.int(4);
          if (!mutate) input = wrapSigned(ServingFrame.forward, leafBytes, payload);
          else if (how === 0) input = m.bytes(wrapSigned(ServingFrame.forward, leafBytes, payload));
          else if (how === 1) input = wrapSigned(ServingFrame.forward, leafBytes, m.bytes(payload)); // the leaf no longer matches
          else {
            const text = m.json(leaf as unknown as SignedLeaf);
            input = wrapSigned(ServingFrame.forward, typeof text === 'string' ? new TextEncoder().encode(text) : text, payload);
          }
          const from = sender(m, prev.peerId);
          run = () => (m.chance(0.9) ? hs.server.onSigned(from, input) : hs.server.onInput(from, ServingFrame.forward, input));
        }
        if (!mutate && startPos === target.pos) target.pos += rows;
      } else if (kind === 'release') {
        const text = mutate ? m.json({ sessionId: target.sessionId }) : JSON.stringify({ sessionId: target.sessionId });
        input = typeof text === 'string' ? new TextEncoder().encode(text) : text;
        if (!mutate) live.splice(live.indexOf(target), 1);
        const from = sender(m, client.peerId);
        run = () => hs.server.onRelease(from, input);
      } else if (kind === 'ask') {
        const text = m.json({ sessionId: target.sessionId, requestId: m.int(1000) });
        input = typeof text === 'string' ? new TextEncoder().encode(text) : text;
        const from = sender(m, client.peerId);
        run = () => hs.server.onAsk(from, input);
      } else if (kind === 'fail') {
        const failure = { sessionId: target.sessionId, requestId: m.int(1000), peerId: next.peerId, code: m.pick(['ERR_NO_ROUTE', 'ERR_SOMETHING_NEW', 'ERR_PEER_TIMEOUT']), message: 'later hop failed', blame: next.peerId };
        const text = mutate ? m.json(failure) : JSON.stringify(failure);
        input = typeof text === 'string' ? new TextEncoder().encode(text) : text;
        const from = sender(m, next.peerId);
        run = () => hs.server.onFail(from, input);
      } else {
        input = Uint8Array.from({ length: m.int(300) }, () => m.int(256));
        const handler = m.pick(['onSetup', 'onInput', 'onSigned', 'onRelease', 'onAsk', 'onFail'] as const);
        const from = sender(m, client.peerId);
        run = () => (handler === 'onInput' ? hs.server.onInput(from, ServingFrame.forward, input) : handler === 'onSetup' ? setupPromises.push(hs.server.onSetup(from, input)) : hs.server[handler](from, input));
      }
      expectNamed('HopServer', i, m, input, [], run);
      if (i % 25 === 0) {
        // Let passes, leaf checks and setups run, so work does not pile up past what a link would carry.
        await Promise.all(setupPromises.splice(0).map((p) => p.catch((err: unknown) => failCase('onSetup', i, m, input, `rejected ${String(err)}`))));
        await new Promise((r) => setImmediate(r));
      }
      if (live.length > 200) live.splice(0, 100);
    }
    await Promise.all(setupPromises);
    // Quiet: nothing left to send once every pass and check has ended.
    let last = -1;
    const deadline = Date.now() + 20_000;
    while (hs.sends !== last && Date.now() < deadline) {
      last = hs.sends;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(hs.sends, 'the hop was still sending 20 s after the last frame').toBe(last);

    // What it sent is well formed: failures parse, outputs carry a leaf and a frame that decode.
    for (const s of hs.sent) {
      if (s.type === ServingFrame.fail) expect(() => decodeControl(SessionFailureSchema, s.payload, 'fail')).not.toThrow();
      if (s.type === ServingFrame.signed) {
        const w = unwrapSigned(s.payload)!;
        expect(() => decodeControl(SignedLeafSchema, w.leaf, 'leaf', MAX_LEAF_BYTES)).not.toThrow();
        if (w.type === ServingFrame.logits) expect(decodeLogits(w.payload).logits.length).toBe(256);
        else expect(() => decodeHidden(w.payload)).not.toThrow();
      }
    }
    for (const w of hs.warnings) expect(w).toBeInstanceOf(AigridError);
    expect(hs.sessions.size).toBeLessThanOrEqual(512);

    // Still serving: a new light session gets its logits.
    hs.assignment.ticketed = false;
    const sessionId = 'feedfacefeedface';
    const setup = routes.light!(sessionId);
    const acked = hs.waitSend((s) => s.type === ServingFrame.session && s.to === client.peerId && decodeControl(SessionSetupSchema, s.payload, 'session').sessionId === sessionId, 5000);
    // Make room: the client may hold its most sessions by now.
    for (const s of hs.sessions.filter(() => true)) s.release();
    await hs.server.onSetup(client.peerId, encodeControl(setup));
    await acked;
    const logits = hs.waitSend((s) => s.type === ServingFrame.signed && s.to === client.peerId && peekIds(unwrapSigned(s.payload)!.payload)?.sessionId === sessionId, 5000);
    hs.server.onInput(client.peerId, ServingFrame.tokens, encodeTokenIds({ sessionId, requestId: 1, startPos: 0, hop: 0, layerStart: 0, layerEnd: 4 }, Uint32Array.of(1, 5, 9)));
    const out = unwrapSigned((await logits).payload)!;
    expect(out.type).toBe(ServingFrame.logits);
    expect(decodeLogits(out.payload).logits.length).toBe(256);

    const grown = (await settledHeap()) - heap;
    console.log(`hop server: ${HOP_CASES} cases in ${(performance.now() - started).toFixed(0)} ms, ${hs.sends} sends ${JSON.stringify(hs.byType)}, heap ${(grown / 2 ** 20).toFixed(1)} MiB after; ${JSON.stringify(Object.fromEntries(stats))}`);
    expect(grown).toBeLessThan(96 * 2 ** 20);
    expect(stats.get('input') ?? 0).toBeGreaterThan(HOP_CASES / 20);
    // Every path ran: acks, outputs passed on or returned, refusals.
    for (const type of [ServingFrame.session, ServingFrame.signed, ServingFrame.fail]) expect(hs.byType[type] ?? 0, `sends of type ${type}`).toBeGreaterThan(50);
  });
});
