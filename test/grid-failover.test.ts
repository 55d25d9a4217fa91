// Failures along a route: a hop killed mid-generation (mesh closed, or its links cut), a hop that
// passes on NaN, wrong shapes or malformed frames, a silent hop, and an evicted KV cache. The
// client routes around the peer at fault, replays the session on a new route, and the greedy
// tokens are exactly the goldens; serving peers answer every bad frame with a `fail` frame.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FailoverEvent } from '../client/grid/index.ts';
import { generate, withHead, type LayerChain } from '../client/model/generate.ts';
import { Shard } from '../client/model/shard.ts';
import { ServingFrame } from '../protocol/index.ts';
import { GOLDEN_STEPS } from './fixtures/index.ts';
import { faultyHop, type Fault } from './helpers/grid-faulty.ts';
import { route, startGridNet, type GridNet } from './helpers/grid-net.ts';
import { openFixture } from './helpers/model-runtime.ts';
import { waitFor } from './helpers/wait.ts';

let net: GridNet;

beforeAll(async () => {
  net = await startGridNet();
});
afterAll(async () => {
  await net?.close();
});

describe('failover', () => {
  it('a hop whose mesh closes mid-generation is replaced by its replica; tokens do not change', async () => {
    const [a, b, b2] = await Promise.all(['kill-a', 'kill-b', 'kill-b2'].map((id) => net.peer('kill', id)));
    const spec = await net.spec('tiny-llama');
    await Promise.all([a!.assign(spec, 0, 2), b!.assign(spec, 2, 4), b2!.assign(spec, 2, 4)]);
    const mesh = await net.join('kill', 'kill-client');
    const events: FailoverEvent[] = [];
    const chain = await net.chain(mesh, 'tiny-llama', [route([a!, 0, 2], [b!, 2, 4]), route([a!, 0, 2], [b2!, 2, 4])], {
      onFailover: (e) => events.push(e),
    });
    const golden = (await net.model('tiny-llama')).golden[3]!;
    const result = await chain.generate(await net.head('tiny-llama'), golden.ids, {
      maxTokens: GOLDEN_STEPS,
      temperature: 0,
      onToken: (_t, step) => step === 8 && b!.mesh.close(),
    });
    expect(result.tokens).toEqual(golden.greedy);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ blame: b!.peerId, replayTokens: golden.ids.length + 9 });
    expect(chain.badPeers()).toEqual([b!.peerId]);
    // The old session was released on the surviving hop, the new one at the end.
    await waitFor(() => a!.sessionCount === 0 && b2!.sessionCount === 0, 5000, 'sessions released');
  });

  it('a hop killed while four concurrent prefills are in flight: every session moves and replays', async () => {
    const [a, b, b2] = await Promise.all(['many-a', 'many-b', 'many-b2'].map((id) => net.peer('many-kill', id)));
    const spec = await net.spec('tiny-llama');
    await Promise.all([a!.assign(spec, 0, 2), b!.assign(spec, 2, 4), b2!.assign(spec, 2, 4)]);
    const mesh = await net.join('many-kill', 'many-kill-client');
    const events: FailoverEvent[] = [];
    const chain = await net.chain(mesh, 'tiny-llama', [route([a!, 0, 2], [b!, 2, 4]), route([a!, 0, 2], [b2!, 2, 4])], {
      chunkTokens: 16,
      onFailover: (e) => events.push(e),
    });
    // b dies as soon as it has started on the first prefill chunk.
    let prefills = 0;
    b!.mesh.on('frame', (_from, f) => f.type === ServingFrame.signed && ++prefills === 1 && b!.mesh.close()); // a signed forward from a
    const head = await net.head('tiny-llama');
    const goldens = (await net.model('tiny-llama')).golden;
    const results = await Promise.all(goldens.map((g) => chain.generate(head, g.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 })));
    for (const [i, r] of results.entries()) expect(r.tokens, goldens[i]!.prompt).toEqual(goldens[i]!.greedy);
    expect(new Set(events.map((e) => e.blame))).toEqual(new Set([b!.peerId]));
    expect(prefills).toBe(1);
    // Every session that had reached b replayed its whole prompt on b2.
    expect(events.every((e) => goldens.some((g) => g.ids.length === e.replayTokens))).toBe(true);
    await waitFor(() => a!.sessionCount === 0 && b2!.sessionCount === 0, 5000, 'sessions released');
  });

  it('hop 0 whose links are cut abruptly is replaced; the surviving hop frees the old session', async () => {
    const [a, a2, b] = await Promise.all(['cut-a', 'cut-a2', 'cut-b'].map((id) => net.peer('cut', id)));
    const spec = await net.spec('tiny-llama');
    await Promise.all([a!.assign(spec, 0, 2), a2!.assign(spec, 0, 2), b!.assign(spec, 2, 4)]);
    const mesh = await net.join('cut', 'cut-client');
    const events: FailoverEvent[] = [];
    const chain = await net.chain(mesh, 'tiny-llama', [route([a!, 0, 2], [b!, 2, 4]), route([a2!, 0, 2], [b!, 2, 4])], {
      onFailover: (e) => events.push(e),
    });
    const golden = (await net.model('tiny-llama')).golden[1]!;
    const cut = () => {
      for (const id of a!.mesh.connectedPeers()) a!.mesh.link(id)!.destroy();
    };
    const result = await chain.generate(await net.head('tiny-llama'), golden.ids, {
      maxTokens: GOLDEN_STEPS,
      temperature: 0,
      onToken: (_t, step) => step === 5 && cut(),
    });
    expect(result.tokens).toEqual(golden.greedy);
    expect(events.map((e) => e.blame)).toEqual([a!.peerId]);
    await waitFor(() => b!.sessionCount === 0 && a2!.sessionCount === 0, 5000, 'sessions released');
  });

  it.each(['nan', 'shape', 'malformed'] as const)('a hop passing on %s output is refused by the next hop and routed around', async (fault) => {
    const network = `fault-${fault}`;
    const [a, b] = await Promise.all([net.peer(network, `${network}-a`), net.peer(network, `${network}-b`)]);
    const spec = await net.spec('tiny-llama');
    await Promise.all([a.assign(spec, 0, 2), b.assign(spec, 2, 4)]);
    const bad = await net.join(network, `${network}-f`);
    faultyHop(bad, () => fault);
    const refused: string[] = [];
    b.on('warning', (e) => refused.push(e.code));
    const mesh = await net.join(network, `${network}-client`);
    const events: FailoverEvent[] = [];
    const chain = await net.chain(mesh, 'tiny-llama', [route([bad, 0, 2], [b, 2, 4]), route([a, 0, 2], [b, 2, 4])], {
      onFailover: (e) => events.push(e),
    });
    const golden = (await net.model('tiny-llama')).golden[2]!;
    const result = await chain.generate(await net.head('tiny-llama'), golden.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 });
    expect(result.tokens).toEqual(golden.greedy);
    const code = { nan: 'ERR_INVALID_ARGUMENT', shape: 'ERR_SHAPE_MISMATCH', malformed: 'ERR_FRAME_MALFORMED' }[fault];
    expect(events.map((e) => [e.blame, e.error.code])).toEqual([[bad.peerId, code]]);
    expect(refused).toContain(code);
  });

  it('a silent hop fails the step with ERR_PEER_TIMEOUT after the allowed retries', async () => {
    const b = await net.peer('silent', 'silent-b');
    await b.assign(await net.spec('tiny-llama'), 2, 4);
    const quiet = await net.join('silent', 'silent-f');
    faultyHop(quiet, () => 'silent');
    const mesh = await net.join('silent', 'silent-client');
    const events: FailoverEvent[] = [];
    const chain = await net.chain(mesh, 'tiny-llama', [route([quiet, 0, 2], [b, 2, 4])], {
      timeoutMs: 300,
      maxFailovers: 1,
      onFailover: (e) => events.push(e),
    });
    const golden = (await net.model('tiny-llama')).golden[0]!;
    const err = await chain.generate(await net.head('tiny-llama'), golden.ids, { maxTokens: 4, temperature: 0 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_PEER_TIMEOUT' });
    expect(events.map((e) => e.error.code)).toEqual(['ERR_PEER_TIMEOUT']);
  });

  it('an evicted KV cache is replayed on the same route without blaming the peer', async () => {
    // Room for exactly one session: a second one evicts the first while it waits.
    const probe = await Shard.load(await openFixture('tiny-llama'), { start: 0, end: 4, backend: 'cpu', maxSessionTokens: 128 });
    const oneSession = probe.kv.sessionBytes;
    probe.destroy();
    const a = await net.peer('evict', 'evict-a', { kvBudgetBytes: oneSession, maxSessionTokens: 128 });
    await a.assign(await net.spec('tiny-llama'), 0, 4);
    const mesh = await net.join('evict', 'evict-client');
    const events: FailoverEvent[] = [];
    const chain = await net.chain(mesh, 'tiny-llama', [route([a, 0, 4])], { onFailover: (e) => events.push(e) });
    const head = await net.head('tiny-llama');
    const [first, second] = (await net.model('tiny-llama')).golden;
    let intruded: number[] | undefined;
    // Midway through the first generation, a whole second one runs on the same peer.
    const layers: LayerChain = async (hidden, positions, sessionId) => {
      if (!intruded && positions[0] === first!.ids.length + 10) {
        intruded = (await chain.generate(head, second!.ids, { maxTokens: 4, temperature: 0 })).tokens;
      }
      return chain.layers(hidden, positions, sessionId);
    };
    const result = await generate(withHead(head, layers), first!.ids, { maxTokens: GOLDEN_STEPS, temperature: 0, sessionId: 'evicted' });
    chain.release('evicted');
    expect(result.tokens).toEqual(first!.greedy);
    expect(intruded).toEqual(second!.greedy.slice(0, 4));
    expect(events.map((e) => [e.error.code, e.blame])).toEqual([['ERR_SESSION_EVICTED', undefined]]);
    expect(chain.badPeers()).toEqual([]);
  });
});
