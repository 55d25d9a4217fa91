// The server hooks that run a network's policies (signaling/policy-hooks.ts) on a real signaling
// server with raw WebSocket clients: route, admission, quota and placement policies each change
// what the server does; policies that loop or overrun their time in a built-in leave the default
// in force within a second, are counted in /metrics, and leave another network's policies alone.
// WorkerSandbox's own bounds (per group, in all), restart and close are checked directly.
import { describe, expect, it } from 'vitest';
import { WorkerSandbox } from '../policy/worker-sandbox.ts';
import type { ModelSpec, PolicySpecInput, ServerMessage } from '../protocol/index.ts';
import { idOf } from './helpers/identities.ts';
import { useSignalingServer } from './helpers/server-fixture.ts';
import { waitFor } from './helpers/wait.ts';
import { CAPS, TestClient } from './helpers/ws-client.ts';

const fixture = useSignalingServer();

const MODEL: ModelSpec = {
  modelId: 'tiny-llama',
  source: 'https://models.example/tiny-llama',
  numLayers: 8,
  hiddenSize: 64,
  layerBytes: 100 * 1024 * 1024,
  weightDtype: 'f16',
  replication: 1,
};

type Assign = Extract<ServerMessage, { type: 'assign' }>;

/** Joins `network` as the test identity `name` with a budget of `layers` of MODEL's 100 MB layers. */
async function join(name: string, network: string, layers: number): Promise<TestClient> {
  const client = fixture.track(await TestClient.open(fixture.server.wsUrl));
  await client.hello(name, network, { ...CAPS, memoryBudgetMB: layers * 100 });
  await client.next('welcome');
  return client;
}

function ready(client: TestClient, m: Assign): void {
  client.send({ type: 'status', modelId: m.model.modelId, start: m.start, end: m.end, state: 'ready', sessions: 0, tokensServed: 0 });
}

let requestIds = 1;

/** Sends a policies request as `owner` and waits for its answer (the records, or the error). */
async function policies(owner: TestClient, op: 'create' | 'update' | 'delete', policy: PolicySpecInput): Promise<ServerMessage> {
  const requestId = requestIds++;
  owner.send({ type: 'policies', requestId, op, ...(op === 'delete' ? { id: policy.id } : { policy }) } as never);
  return Promise.race([owner.next('policies', (m) => m.requestId === requestId), owner.next('error', (m) => m.requestId === requestId)]);
}

/** One route request; its answer (route or error) and how long it took. */
async function route(client: TestClient, modelId = MODEL.modelId): Promise<{ answer: ServerMessage; ms: number }> {
  const requestId = requestIds++;
  const start = performance.now();
  client.send({ type: 'route', requestId, modelId });
  const answer = await Promise.race([client.next('route', (m) => m.requestId === requestId, 20_000), client.next('error', (m) => m.requestId === requestId, 20_000)]);
  return { answer, ms: performance.now() - start };
}

const hopsOf = (answer: ServerMessage) => (answer.type === 'route' ? answer.hops.map((h) => h.peerId) : answer);

/**
 * A network whose owner (no memory) serves MODEL with one copy per holder (`layers` of room each),
 * so every holder holds the whole model, all reported ready.
 */
async function servingNetwork(network: string, owner: string, holders: string[], layers = 8): Promise<{ owner: TestClient; peers: TestClient[] }> {
  const ownerClient = await join(owner, network, 0);
  const peers: TestClient[] = [];
  for (const name of holders) peers.push(await join(name, network, layers));
  ownerClient.send({ type: 'serve', model: { ...MODEL, replication: holders.length } });
  for (const peer of peers) ready(peer, await peer.next('assign'));
  await ownerClient.next('models', (m) => m.models[0]?.ready.every((r) => r === holders.length) ?? false);
  return { owner: ownerClient, peers };
}

async function policyFailures(hook: string): Promise<number> {
  const text = await (await fetch(`${fixture.server.httpUrl}/metrics`)).text();
  const line = new RegExp(`^aigrid_policy_failures_total\\{hook="${hook}"\\} (\\d+)$`, 'm').exec(text);
  return line ? Number(line[1]) : 0;
}

const AVOID = `function eval(p, input) {
  if (input.modelId !== 'tiny-llama' || input.candidates.length !== 2 || input.end !== 8) throw new Error('unexpected input ' + JSON.stringify(input));
  return { exclude: input.candidates.filter((c) => c.peerId === p.avoid).map((c) => c.peerId) };
}`;

describe('server policy hooks', () => {
  it('a route policy keeps a named peer off every route while another holds the layers; one policy per hook', async () => {
    await fixture.start();
    const { owner } = await servingNetwork('net', 'owner', ['peer-a', 'peer-b']);
    const client = await join('client', 'net', 0);
    // Without a policy the built-in choice takes peer-a or peer-b (the same every time): that one is avoided.
    const chosen = hopsOf((await route(client)).answer) as string[];
    expect(chosen).toHaveLength(1);
    const avoided = chosen[0]!;
    const other = [idOf('peer-a'), idOf('peer-b')].find((p) => p !== avoided)!;

    expect(await policies(owner, 'create', { id: 'avoid', hook: 'route', code: AVOID, parameters: { avoid: avoided } })).toMatchObject({ type: 'policies' });
    for (let i = 0; i < 5; i++) expect(hopsOf((await route(client)).answer)).toEqual([other]);
    // A second route policy is refused by name; the first stays in force.
    expect(await policies(owner, 'create', { id: 'avoid-too', hook: 'route', code: AVOID, parameters: { avoid: other } })).toMatchObject({ type: 'error', code: 'ERR_POLICY_HOOK_TAKEN' });
    expect(hopsOf((await route(client)).answer)).toEqual([other]);
    // Deleted, the built-in choice is back.
    await policies(owner, 'delete', { id: 'avoid', hook: 'route', code: 'x' });
    expect(hopsOf((await route(client)).answer)).toEqual([avoided]);
    expect(await policyFailures('route')).toBe(0);
  });

  it('an admission policy refuses small peers by name and admits big ones; the owner always joins', async () => {
    await fixture.start();
    const owner = await join('owner', 'net', 0);
    const code = `function eval(p, input) {
      return input.capabilities.memoryBudgetMB >= p.minMB ? { admit: true } : { admit: false, reason: 'memoryBudgetMB under ' + p.minMB };
    }`;
    expect(await policies(owner, 'create', { id: 'big-only', hook: 'admission', code, parameters: { minMB: 500 } })).toMatchObject({ type: 'policies' });

    const small = fixture.track(await TestClient.open(fixture.server.wsUrl));
    await small.hello('small', 'net', { ...CAPS, memoryBudgetMB: 100 });
    expect(await small.next('error', undefined, 20_000)).toMatchObject({ code: 'ERR_ADMISSION_REFUSED', ref: 'hello', message: expect.stringMatching(/does not admit .*: memoryBudgetMB under 500/) });
    expect((await small.closed).code).toBe(1008);
    expect(small.all('welcome')).toEqual([]);

    const big = await join('big', 'net', 10);
    expect(big.all('welcome')[0]).toMatchObject({ peerId: idOf('big'), network: 'net' });
    // The owner is admitted whatever the policy says (a bad policy cannot lock it out).
    const ownerAgain = await join('owner', 'net', 0);
    expect(ownerAgain.all('welcome')).toHaveLength(1);
    const view = (await (await fetch(`${fixture.server.httpUrl}/api/networks/net`)).json()) as { peers: { peerId: string }[] };
    expect(view.peers.map((p) => p.peerId).sort()).toEqual([idOf('big'), idOf('owner')].sort());
  });

  it('a quota policy stops the 4th route request of a client within the minute, and only that client', async () => {
    await fixture.start();
    const { owner } = await servingNetwork('net', 'owner', ['peer-a']);
    const code = `function eval(p, input) {
      if (typeof input.requests.hour !== 'number' || input.modelId !== 'tiny-llama') throw new Error('unexpected input');
      return { allow: input.requests.minute <= p.perMinute };
    }`;
    expect(await policies(owner, 'create', { id: 'three', hook: 'quota', code, parameters: { perMinute: 3 } })).toMatchObject({ type: 'policies' });
    const client = await join('client', 'net', 0);
    for (let i = 0; i < 3; i++) expect(hopsOf((await route(client)).answer)).toEqual([idOf('peer-a')]);
    const refused = await route(client);
    expect(refused.answer).toMatchObject({ type: 'error', code: 'ERR_QUOTA_EXCEEDED', ref: 'route', requestId: requestIds - 1 });
    expect(refused.answer.type === 'error' && refused.answer.message).toMatch(/quota policy of network net refuses/);
    // Another client has its own count.
    const second = await join('client-2', 'net', 0);
    expect(hopsOf((await route(second)).answer)).toEqual([idOf('peer-a')]);
    expect(await policyFailures('quota')).toBe(0);
  });

  it('a placement policy keeps a model off a named peer, at once when it is created', async () => {
    await fixture.start();
    const { owner, peers } = await servingNetwork('net', 'owner', ['peer-a', 'peer-b'], 12);
    const [a, b] = peers as [TestClient, TestClient];
    const code = `function eval(p, input) {
      if (input.numLayers !== (input.modelId === 'tiny-two' ? 4 : 8) || !input.peers.some((x) => x.peerId === p.off && x.memoryBudgetMB === 1200 && x.kind === 'node')) throw new Error('unexpected input');
      return { exclude: [p.off] };
    }`;
    expect(await policies(owner, 'create', { id: 'off-b', hook: 'placement', code, parameters: { off: idOf('peer-b') } })).toMatchObject({ type: 'policies' });
    // Re-placed when the policy is created: peer-b unloads, peer-a keeps its range.
    expect(await b.next('unassign', undefined, 20_000)).toMatchObject({ modelId: MODEL.modelId });
    const serving = async () => ((await (await fetch(`${fixture.server.httpUrl}/api/networks/net`)).json()) as { serving: { peerId: string; modelId: string }[] }).serving;
    expect((await serving()).map((s) => s.peerId)).toEqual([idOf('peer-a')]);
    // A model served later is placed without peer-b too.
    owner.send({ type: 'serve', model: { ...MODEL, modelId: 'tiny-two', numLayers: 4 } });
    expect(await a.next('assign', (m) => m.model.modelId === 'tiny-two', 20_000)).toMatchObject({ start: 0, end: 4 });
    await owner.next('models', (m) => m.models.length === 2);
    expect((await serving()).filter((s) => s.modelId === 'tiny-two').map((s) => s.peerId)).toEqual([idOf('peer-a')]);
    expect(b.all('assign').filter((m) => m.model.modelId === 'tiny-two')).toEqual([]);
    expect(await policyFailures('placement')).toBe(0);
  });

  it('a looping policy and one stuck in a heavy built-in leave the default answering within a second, counted, and another network unaffected', async () => {
    await fixture.start();
    const bad = await servingNetwork('bad', 'bad-owner', ['bad-peer']);
    const good = await servingNetwork('good', 'good-owner', ['good-a', 'good-b']);
    const badClient = await join('bad-client', 'bad', 0);
    const goodClient = await join('good-client', 'good', 0);

    // The good network avoids the peer its routes would take; its first call also waits for the
    // sandbox to load. The spare worker is loaded before the bad policies come.
    const [goodDefault] = hopsOf((await route(goodClient)).answer) as string[];
    const goodOther = [idOf('good-a'), idOf('good-b')].find((p) => p !== goodDefault)!;
    await policies(good.owner, 'create', { id: 'avoid', hook: 'route', code: AVOID, parameters: { avoid: goodDefault } });
    expect(hopsOf((await route(goodClient)).answer)).toEqual([goodOther]);
    await waitFor(() => fixture.server.policySandbox()?.ready === 2, 30_000, 'the sandbox worker and its spare loaded');

    await policies(bad.owner, 'create', { id: 'spin', hook: 'route', code: 'function eval() { while (true) {} }' });
    for (let i = 0; i < 2; i++) {
      const { answer, ms } = await route(badClient);
      expect(hopsOf(answer)).toEqual([idOf('bad-peer')]);
      expect(ms).toBeLessThan(1000);
    }
    expect(await policyFailures('route')).toBe(2);

    // A loop of native calls that QuickJS's interrupt would let run for about a minute: the
    // worker is terminated at the hard deadline. The good network's route, asked at the same
    // moment, still gets its own policy's answer.
    const heavy = `function eval() { const s = 'x'.repeat(1 << 22); for (;;) s.lastIndexOf('y'); }`;
    expect(await policies(bad.owner, 'update', { id: 'spin', hook: 'route', code: heavy })).toMatchObject({ type: 'policies' });
    const [badRoute, goodRoute] = await Promise.all([route(badClient), route(goodClient)]);
    expect(hopsOf(badRoute.answer)).toEqual([idOf('bad-peer')]);
    expect(badRoute.ms).toBeLessThan(1000);
    expect(hopsOf(goodRoute.answer)).toEqual([goodOther]);
    expect(goodRoute.ms).toBeLessThan(1000);
    expect(await policyFailures('route')).toBe(3);
    expect(fixture.server.policySandbox()?.restarts).toBe(1);

    // The bad network's hooks now use their defaults without waiting; the good one's policy still runs.
    const after = await route(badClient);
    expect(hopsOf(after.answer)).toEqual([idOf('bad-peer')]);
    expect(after.ms).toBeLessThan(200);
    for (let i = 0; i < 3; i++) expect(hopsOf((await route(goodClient)).answer)).toEqual([goodOther]);
    expect(await policyFailures('route')).toBe(4);
    // Closing the server terminates the sandbox's workers.
    await fixture.server.close();
    expect(fixture.server.policySandbox()).toMatchObject({ ready: 0, loading: 0, running: 0 });
  });
});

describe('WorkerSandbox', () => {
  it('bounds its calls per group and in all by name, replaces a terminated worker, pauses its group, and ends calls on close', async () => {
    const sandbox = new WorkerSandbox({ maxPerGroup: 2, maxQueued: 3 });
    try {
      const add = { name: 'add', code: 'function eval(p, input) { return input + p; }', parameters: 1 };
      const heavy = { name: 'heavy', code: `function eval() { const s = 'x'.repeat(1 << 22); for (;;) s.lastIndexOf('y'); }` };
      expect(await sandbox.run(add, 1, null, 'a')).toBe(2); // waits for the first worker
      await waitFor(() => sandbox.stats().ready === 2, 30_000, 'the worker and its spare loaded');
      const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code: string }) => e.code);
      // a1 runs; a2, b1 and c1 wait: a3 passes a's share, d1 the queue.
      const a1 = code(sandbox.run(heavy, null, null, 'a'));
      const waiting = [sandbox.run(add, 2, null, 'a'), sandbox.run(add, 3, null, 'b'), sandbox.run(add, 4, null, 'c')];
      expect(await code(sandbox.run(add, 5, null, 'a'))).toBe('ERR_POLICY_BUSY');
      expect(await code(sandbox.run(add, 6, null, 'd'))).toBe('ERR_POLICY_BUSY');
      expect(await a1).toBe('ERR_POLICY_LIMIT');
      // The spare took over: the calls that waited are answered.
      expect(await Promise.all(waiting)).toEqual([3, 4, 5]);
      expect(sandbox.stats().restarts).toBe(1);
      // The group whose call was terminated is paused; the others are not.
      expect(await code(sandbox.run(add, 7, null, 'a'))).toBe('ERR_POLICY_LIMIT');
      expect(await sandbox.run(add, 8, null, 'b')).toBe(9);
      const pending = code(sandbox.run(heavy, null, null, 'b'));
      await sandbox.close();
      expect(await pending).toBe('ERR_NOT_AVAILABLE');
      expect(await code(sandbox.run(add, 9, null, 'b'))).toBe('ERR_NOT_AVAILABLE');
      expect(sandbox.stats()).toMatchObject({ ready: 0, loading: 0, running: 0, queued: 0 });
    } finally {
      await sandbox.close();
    }
  });
});
