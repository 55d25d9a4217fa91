// Light sessions: the first peer holds the embedding and the last the final norm and LM head, so
// the client sends token ids and gets logits back, holding no weights. Greedy tokens equal the
// goldens, a peer killed mid-generation is replaced by its replica (the replay resends token ids),
// and a hop 0 without the embedding refuses the session.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { FailoverEvent, GridPeer } from '../client/grid/index.ts';
import { Head } from '../client/model/head.ts';
import { readConfig } from '../client/model/shard.ts';
import { ServingFrame, unwrapSigned } from '../protocol/index.ts';
import { GOLDEN_STEPS } from './fixtures/index.ts';
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

/** The model's vocabulary size, from its config alone (the client reads no weights). */
async function vocabSize(name: string): Promise<number> {
  return readConfig(await openFixture(name)).vocabSize;
}

describe('light sessions over Node peers (CPU)', () => {
  it('tiny-llama over three peers, embedding on the first and head on the last, gives the golden tokens', async () => {
    const loads = vi.spyOn(Head, 'load');
    const [a, b, c] = await Promise.all(['light-a', 'light-b', 'light-c'].map((id) => net.peer('light', id)));
    const spec = await net.spec('tiny-llama');
    await Promise.all([a!.assign(spec, 0, 1, { embed: true }), b!.assign(spec, 1, 3), c!.assign(spec, 3, 4, { head: true })]);
    // Only the two peers holding head parts loaded a Head; the client loads none below.
    expect(loads).toHaveBeenCalledTimes(2);

    const mesh = await net.join('light', 'light-client');
    const received = new Set<number>();
    // Results come signed (protocol/evidence.ts): count the frame inside.
    mesh.on('frame', (_from, f) => received.add(f.type === ServingFrame.signed ? unwrapSigned(f.payload)!.type : f.type));
    const fromClient = new Set<number>();
    a!.mesh.on('frame', (from, f) => from === mesh.peerId && fromClient.add(f.type));
    const chain = await net.wholeModel(mesh, 'tiny-llama', [route([a!, 0, 1], [b!, 1, 3], [c!, 3, 4])], {
      chunkTokens: 16,
      vocabSize: await vocabSize('tiny-llama'),
    });
    for (const golden of (await net.model('tiny-llama')).golden) {
      const result = await chain.generate(golden.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 });
      expect(result.tokens, golden.prompt).toEqual(golden.greedy);
    }
    // Eight light generations at once (each golden prompt twice) all keep their tokens.
    const goldens = (await net.model('tiny-llama')).golden;
    const many = await Promise.all(
      [...goldens, ...goldens].map((g) => chain.generate(g.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 })),
    );
    many.forEach((r, i) => expect(r.tokens).toEqual(goldens[i % goldens.length]!.greedy));
    expect(loads).toHaveBeenCalledTimes(2);
    loads.mockRestore();
    // Token ids went out, logits came back; no hidden state crossed the client's links.
    expect(fromClient.has(ServingFrame.tokens)).toBe(true);
    expect(fromClient.has(ServingFrame.forward)).toBe(false);
    expect(received.has(ServingFrame.logits)).toBe(true);
    expect(received.has(ServingFrame.result)).toBe(false);
    await waitFor(() => [a, b, c].every((p) => p!.sessionCount === 0), 5000, 'sessions released on every hop');
  });

  it('the last peer killed mid-generation is replaced by its replica; tokens do not change', async () => {
    const ids = ['kill-a', 'kill-b', 'kill-c', 'kill-c2'];
    const [a, b, c, c2] = await Promise.all(ids.map((id) => net.peer('light-kill', id)));
    const spec = await net.spec('tiny-llama');
    await Promise.all([
      a!.assign(spec, 0, 2, { embed: true }),
      b!.assign(spec, 2, 3),
      c!.assign(spec, 3, 4, { head: true }),
      c2!.assign(spec, 3, 4, { head: true }),
    ]);
    const mesh = await net.join('light-kill', 'light-kill-client');
    const events: FailoverEvent[] = [];
    const routes = [route([a!, 0, 2], [b!, 2, 3], [c!, 3, 4]), route([a!, 0, 2], [b!, 2, 3], [c2!, 3, 4])];
    const chain = await net.wholeModel(mesh, 'tiny-llama', routes, {
      vocabSize: await vocabSize('tiny-llama'),
      onFailover: (e) => events.push(e),
    });
    const golden = (await net.model('tiny-llama')).golden[3]!;
    const result = await chain.generate(golden.ids, {
      maxTokens: GOLDEN_STEPS,
      temperature: 0,
      onToken: (_t, step) => step === 8 && c!.mesh.close(),
    });
    expect(result.tokens).toEqual(golden.greedy);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ blame: c!.peerId, replayTokens: golden.ids.length + 9 });
    await waitFor(() => [a, b, c2].every((p) => p!.sessionCount === 0), 5000, 'sessions released');
  });

  it('a hop 0 without the embedding refuses a light session; the same peers serve a default one', async () => {
    const [a, b] = await Promise.all(['plain-a', 'plain-b'].map((id) => net.peer('light-plain', id)));
    const spec = await net.spec('tiny-llama');
    await Promise.all([a!.assign(spec, 0, 2), b!.assign(spec, 2, 4, { head: true })]);
    const mesh = await net.join('light-plain', 'light-plain-client');
    const vocab = await vocabSize('tiny-llama');
    const refused = async (peers: GridPeer[], maxFailovers = 0) => {
      const chain = await net.wholeModel(mesh, 'tiny-llama', [route([peers[0]!, 0, 2], [peers[1]!, 2, 4])], { vocabSize: vocab, maxFailovers });
      return chain.generate([1, 2, 3], { maxTokens: 1, temperature: 0 });
    };
    await expect(refused([a!, b!])).rejects.toMatchObject({ code: 'ERR_NO_ROUTE', message: expect.stringContaining('embedding') });
    // Allowed to fail over, it runs out of routes; the error still says why the first one failed.
    await expect(refused([a!, b!], 2)).rejects.toMatchObject({ code: 'ERR_NO_ROUTE', message: expect.stringMatching(/every given route passes a failed peer.*after route 1 failed: .*embedding/) });
    // The same peers serve a default session.
    const chain = await net.chain(mesh, 'tiny-llama', [route([a!, 0, 2], [b!, 2, 4])]);
    const golden = (await net.model('tiny-llama')).golden[0]!;
    const result = await chain.generate(await net.head('tiny-llama'), golden.ids, { maxTokens: GOLDEN_STEPS, temperature: 0 });
    expect(result.tokens).toEqual(golden.greedy);
  });
});
