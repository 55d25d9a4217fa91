// Credits: the ledger settles the smaller of what a client and a serving peer report, adds up
// exactly over a scripted random workload, keeps its bounds under floods, refuses hostile reports
// by name, and (over a real signaling server with a data folder) keeps every balance across a
// restart.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseClientMessage, type ClientMessage, type CreditRules, type ServerMessage } from '../protocol/index.ts';
import { Credits, MAX_PAIR_TOKENS_PER_SECOND, UNCONFIRMED_MS } from '../signaling/credits.ts';
import { Governance } from '../signaling/governance.ts';
import { Ledger, MAX_JOURNAL_ENTRIES, StoredLedgerSchema } from '../signaling/ledger.ts';
import { MAX_PAIRS_PER_CLIENT, MAX_PAIRS_PER_NETWORK } from '../signaling/usage-pairs.ts';
import { startSignalingServer } from '../signaling/server.ts';
import { UsageCounts } from '../client/grid/usage-counts.ts';
import { mulberry32 } from './helpers/random.ts';
import { idOf } from './helpers/identities.ts';
import { CAPS, TestClient } from './helpers/ws-client.ts';
import { startRedisServer } from './helpers/redis-server.ts';

const NET = 'credits-net';
const OWNER = 'owner-key';

/** Credits on one network owned by OWNER, with a clock the test moves. */
function setup(credits: Partial<CreditRules> = {}, options: { maxAccounts?: number; maxLedgers?: number } = {}) {
  const governance = new Governance(OWNER);
  governance.joined(NET, OWNER);
  governance.setPolicy(NET, { credits });
  let now = 1_000_000;
  const errors: ServerMessage[] = [];
  const replies: ServerMessage[] = [];
  const reply = (m: ServerMessage) => (m.type === 'error' ? errors : replies).push(m);
  const store = new Credits({ governance, log: () => {}, now: () => now, ...options });
  const route = (client: string, modelId: string, hops: [string, number, number][]) =>
    store.routed(NET, client, modelId, hops.map(([peerId, start, end]) => ({ peerId, start, end })));
  const peerSays = (peer: string, modelId: string, held: [number, number], usage: [string, number, number, number][]) =>
    store.served(NET, peer, { modelId, start: held[0], end: held[1], usage: usage.map(([client, start, end, tokens]) => ({ client, start, end, tokens })) }, reply);
  const clientSays = (client: string, modelId: string, peers: [string, number, number, number][]) =>
    store.received(NET, client, { type: 'usage', modelId, peers: peers.map(([peerId, start, end, tokens]) => ({ peerId, start, end, tokens })) }, reply);
  return { store, governance, errors, replies, reply, route, peerSays, clientSays, tick: (ms: number) => (now += ms) };
}

describe('settlement', () => {
  it('pays the smaller of both sides, in metered mode from the client to the peer', () => {
    const t = setup({ mode: 'metered', pricePerToken: 2 });
    t.route('client-a', 'm', [['peer-a', 0, 3], ['peer-b', 3, 4]]);
    t.tick(2000);
    t.peerSays('peer-a', 'm', [0, 3], [['client-a', 0, 3, 100]]); // the peer claims more than it did
    expect(t.store.balance(NET, 'peer-a')).toBe(0); // the client has not confirmed anything yet
    t.clientSays('client-a', 'm', [['peer-a', 0, 3, 80], ['peer-b', 3, 4, 80]]);
    expect(t.store.balance(NET, 'peer-a')).toBe(80 * 3 * 2);
    expect(t.store.balance(NET, 'client-a')).toBe(-80 * 3 * 2); // metered: below zero is allowed
    expect(t.store.balance(NET, 'peer-b')).toBe(0); // peer-b has not reported
    t.tick(2000);
    t.peerSays('peer-b', 'm', [3, 4], [['client-a', 3, 4, 50]]); // peer-b under-reports
    expect(t.store.balance(NET, 'peer-b')).toBe(50 * 1 * 2);
    // What one side reported beyond the other waits: peer-a's 20 more, the client's 30 for peer-b.
    expect(t.store.pending(NET, 'client-a', 'peer-a', 'm', 0, 3)).toMatchObject({ fromPeer: { tokens: 20 }, fromClient: { tokens: 0 } });
    expect(t.store.pending(NET, 'client-a', 'peer-b', 'm', 3, 4)).toMatchObject({ fromClient: { tokens: 30 }, fromPeer: { tokens: 0 } });
    expect(t.errors).toEqual([]);
    const kinds = t.store.journal(NET).map((e) => `${e.kind} ${e.key} ${e.amount}`);
    expect(kinds).toEqual(['spend client-a 480', 'earn peer-a 480', 'spend client-a 100', 'earn peer-b 100']);
    expect(t.store.audit(NET)).toMatchObject({ balances: 0, minted: 0, moved: 580, holds: true });
  });

  it('mints settled work to the contributor in free mode, and charges nobody', () => {
    const t = setup(); // the default: free, 1 per token per layer
    expect(t.store.rules(NET)).toEqual({ mode: 'free', pricePerToken: 1, pricePerCall: 1, grant: 0 });
    t.route('client-a', 'm', [['peer-a', 0, 4]]);
    t.tick(1000);
    t.peerSays('peer-a', 'm', [0, 4], [['client-a', 0, 4, 10]]);
    t.clientSays('client-a', 'm', [['peer-a', 0, 4, 10]]);
    expect(t.store.balance(NET, 'peer-a')).toBe(40);
    expect(t.store.balance(NET, 'client-a')).toBe(0);
    expect(t.store.journal(NET)).toMatchObject([{ kind: 'mint', key: 'peer-a', amount: 40, counterparty: 'client-a', modelId: 'm' }]);
    expect(t.store.audit(NET)).toMatchObject({ balances: 40, minted: 40, holds: true });
  });

  it('prices whole-model calls by the call', () => {
    const t = setup({ mode: 'metered', pricePerCall: 7 });
    t.route('client-a', 'block/x', [['peer-a', 0, 1]]);
    t.tick(1000);
    t.store.served(NET, 'peer-a', { modelId: 'block/x', start: 0, end: 1, usage: [{ client: 'client-a', start: 0, end: 1, tokens: 0, calls: 3 }] }, t.reply);
    t.store.received(NET, 'client-a', { type: 'usage', modelId: 'block/x', peers: [{ peerId: 'peer-a', start: 0, end: 1, tokens: 0, calls: 2 }] }, t.reply);
    expect(t.store.balance(NET, 'peer-a')).toBe(14);
    expect(t.store.balance(NET, 'client-a')).toBe(-14);
  });

  it('adds up exactly over a scripted random workload of many reports from both sides', () => {
    const rand = mulberry32(16_5);
    const grant = 1_000_000;
    const t = setup({ mode: 'metered', pricePerToken: 3, grant });
    const clients = Array.from({ length: 12 }, (_, i) => `client-${i}`);
    const peers = Array.from({ length: 8 }, (_, i) => `peer-${i}`);
    const models = ['alpha', 'beta'];
    // Each peer holds one range per model; a route is a chain over the model's 6 layers.
    const ranges = new Map<string, [number, number]>();
    for (const p of peers) for (const m of models) {
      const start = Math.floor(rand() * 5);
      ranges.set(`${p} ${m}`, [start, start + 1 + Math.floor(rand() * (6 - start))]);
    }
    type Key = string;
    const reported = new Map<Key, { client: number; peer: number; layers: number; peerId: string }>();
    const routes: { client: string; model: string; hops: [string, number, number][] }[] = [];
    for (let i = 0; i < 60; i++) {
      const client = clients[Math.floor(rand() * clients.length)]!;
      const model = models[Math.floor(rand() * models.length)]!;
      const peer = peers[Math.floor(rand() * peers.length)]!;
      const [start, end] = ranges.get(`${peer} ${model}`)!;
      const hops: [string, number, number][] = [[peer, start, end]];
      t.store.refusesRoute(NET, client, { modelId: model, numLayers: 6 } as never, {}); // a new key's grant
      t.route(client, model, hops);
      routes.push({ client, model, hops });
    }
    // Reports in random order: peers claim their real work or more, clients confirm it or less.
    for (let step = 0; step < 2000; step++) {
      t.tick(1000);
      const { client, model, hops } = routes[Math.floor(rand() * routes.length)]!;
      const [peer, start, end] = hops[0]!;
      const work = Math.floor(rand() * 200);
      const key = `${client} ${peer} ${model} ${start} ${end}`;
      const r = reported.get(key) ?? { client: 0, peer: 0, layers: end - start, peerId: peer };
      reported.set(key, r);
      if (rand() < 0.5) {
        const claim = rand() < 0.2 ? work * 2 : work;
        t.peerSays(peer, model, ranges.get(`${peer} ${model}`)!, [[client, start, end, claim]]);
        r.peer += claim;
      } else {
        const confirm = rand() < 0.2 ? Math.floor(work / 2) : work;
        t.clientSays(client, model, [[peer, start, end, confirm]]);
        r.client += confirm;
      }
    }
    expect(t.errors).toEqual([]);
    // Each contributor holds exactly sum(min(peer's, client's) x layers x price) over its pairs.
    const earned = new Map<string, number>();
    for (const r of reported.values()) earned.set(r.peerId, (earned.get(r.peerId) ?? 0) + Math.min(r.client, r.peer) * r.layers * 3);
    for (const p of peers) expect(t.store.balance(NET, p)).toBe(earned.get(p) ?? 0);
    // Every key's balance and the sum: only the grants were minted.
    const granted = new Set(routes.map((r) => r.client)).size * grant;
    const audit = t.store.audit(NET);
    expect(audit.holds).toBe(true);
    expect(audit.minted).toBe(granted);
    expect(audit.balances).toBe(granted);
    const spent = [...earned.values()].reduce((a, b) => a + b, 0);
    expect(audit.moved).toBe(spent);
    expect(clients.reduce((sum, c) => sum + t.store.balance(NET, c), 0)).toBe(granted - spent);
    // The journal keeps its last entries, each spend beside its earn.
    const journal = t.store.journal(NET);
    expect(journal.length).toBeLessThanOrEqual(MAX_JOURNAL_ENTRIES);
    expect(journal[0]!.kind).not.toBe('earn');
  });
});

describe('bounds', () => {
  it('caps a flood of pairs per network and per client, oldest dropped', () => {
    const t = setup({ mode: 'metered' });
    for (let i = 0; i < MAX_PAIRS_PER_NETWORK + 500; i++) t.route(`client-${i}`, 'm', [[`peer-${i % 7}`, 0, 2]]);
    expect(t.store.pairCount(NET)).toBe(MAX_PAIRS_PER_NETWORK);
    expect(t.store.pending(NET, 'client-0', 'peer-0', 'm', 0, 2)).toBeUndefined();
    expect(t.store.pending(NET, `client-${MAX_PAIRS_PER_NETWORK + 499}`, `peer-${(MAX_PAIRS_PER_NETWORK + 499) % 7}`, 'm', 0, 2)).toBeDefined();
    // One client asking routes through ever more peers keeps only its last MAX_PAIRS_PER_CLIENT.
    const u = setup({ mode: 'metered' });
    u.route('honest', 'm', [['peer-h', 0, 2]]);
    for (let i = 0; i < 1000; i++) u.route('greedy', 'm', [[`peer-${i}`, 0, 2]]);
    expect(u.store.pairCount(NET)).toBe(1 + MAX_PAIRS_PER_CLIENT);
    expect(u.store.pending(NET, 'honest', 'peer-h', 'm', 0, 2)).toBeDefined();
  });

  it('keeps at most as many accounts as it takes, and reclaims empty ones first', () => {
    const t = setup({ mode: 'metered' }, { maxAccounts: 3 });
    const grant = (key: string, amount: number) => t.store.handle(NET, OWNER, { type: 'grant', requestId: 1, key, amount }, t.reply);
    grant('key-1', 5);
    grant('key-2', 5);
    grant('key-3', 5);
    grant('key-4', 5);
    expect(t.errors.at(-1)).toMatchObject({ code: 'ERR_REGISTRY_FULL', ref: 'grant', requestId: 1 });
    expect(t.store.audit(NET)).toMatchObject({ balances: 15, minted: 15, holds: true });
    // A ledger whose accounts are spent to zero gives their room back.
    const room = { held: 0, max: 2 };
    const ledger = new Ledger(room);
    ledger.grant('key-1', 5);
    ledger.transfer('key-1', 'key-2', 5, 'm');
    expect(() => ledger.grant('key-3', 1)).not.toThrow();
    expect(ledger.balance('key-1')).toBe(0);
    expect(room.held).toBe(2);
    expect(ledger.audit()).toMatchObject({ balances: 6, minted: 6, holds: true });
  });

  it('refuses amounts past what the ledger counts, changing nothing', () => {
    const ledger = new Ledger({ held: 0, max: 10 });
    ledger.grant('key-1', Number.MAX_SAFE_INTEGER - 1);
    expect(() => ledger.grant('key-2', 2)).toThrow(/minted as many/);
    expect(() => ledger.grant('key-2', 1.5)).toThrow(/positive integer/);
    expect(() => ledger.transfer('key-1', 'key-1', 1, 'm')).toThrow(/itself/);
    expect(ledger.audit()).toMatchObject({ balances: Number.MAX_SAFE_INTEGER - 1, holds: true });
    // A stored ledger that does not add up is not read back.
    const stored = ledger.stored();
    expect(StoredLedgerSchema.safeParse(stored).success).toBe(true);
    expect(StoredLedgerSchema.safeParse({ ...stored, accounts: [['key-1', 5, 0]] }).success).toBe(false);
  });

  it('counts at most its cap of parties between two reports, and hands out 64 per report', () => {
    const counts = new UsageCounts(100);
    for (let i = 0; i < 150; i++) counts.add(`client-${i}`, 0, 2, 1);
    expect(counts.size).toBe(100);
    expect(counts.take(64)).toHaveLength(64);
    expect(counts.take(64)).toHaveLength(36);
  });
});

describe('hostile reports', () => {
  it('are refused by name: negative, huge, more than the time allows, unknown pairs, layers not held', () => {
    const t = setup({ mode: 'metered' });
    const usage = (tokens: number) => JSON.stringify({ type: 'usage', modelId: 'm', peers: [{ peerId: 'peer-a', start: 0, end: 2, tokens }] });
    expect(parseClientMessage(usage(-1))).toMatchObject({ ok: false, code: 'ERR_INVALID_MESSAGE' });
    expect(parseClientMessage(usage(1e12))).toMatchObject({ ok: false, code: 'ERR_INVALID_MESSAGE' });
    expect(parseClientMessage(usage(1.5))).toMatchObject({ ok: false, code: 'ERR_INVALID_MESSAGE' });
    const tooMany = { type: 'usage', modelId: 'm', peers: Array.from({ length: 65 }, () => ({ peerId: 'peer-a', start: 0, end: 2, tokens: 1 })) };
    expect(parseClientMessage(JSON.stringify(tooMany))).toMatchObject({ ok: false, code: 'ERR_INVALID_MESSAGE' });
    const backwards = { type: 'status', modelId: 'm', start: 0, end: 2, state: 'ready', sessions: 0, tokensServed: 0, usage: [{ client: 'client-a', start: 2, end: 1, tokens: 1 }] };
    expect(parseClientMessage(JSON.stringify(backwards))).toMatchObject({ ok: false, code: 'ERR_INVALID_MESSAGE' });
    expect(parseClientMessage(JSON.stringify({ ...backwards, usage: [{ client: 'client-a', start: 0, end: 2, tokens: 1 }] }))).toMatchObject({ ok: true });

    t.route('client-a', 'm', [['peer-a', 0, 2], ['peer-b', 2, 4]]);
    t.route('client-a', 'other', [['peer-c', 0, 4]]);
    t.tick(1000);
    const refused = (fn: () => void, pattern: RegExp) => {
      const before = t.errors.length;
      fn();
      expect(t.errors.slice(before)).toEqual([expect.objectContaining({ type: 'error', code: 'ERR_BAD_USAGE', message: expect.stringMatching(pattern) })]);
    };
    // More than the time since the route allows (a second's worth at first, and one per second since)...
    refused(() => t.peerSays('peer-a', 'm', [0, 2], [['client-a', 0, 2, 2 * MAX_PAIR_TOKENS_PER_SECOND + 1]]), /more than the time since the pair was routed allows/);
    // ...also in many small reports: what they claim adds up.
    t.peerSays('peer-a', 'm', [0, 2], [['client-a', 0, 2, MAX_PAIR_TOKENS_PER_SECOND]]);
    t.peerSays('peer-a', 'm', [0, 2], [['client-a', 0, 2, MAX_PAIR_TOKENS_PER_SECOND]]);
    refused(() => t.peerSays('peer-a', 'm', [0, 2], [['client-a', 0, 2, 1]]), /more than the time/);
    t.tick(1000);
    t.peerSays('peer-a', 'm', [0, 2], [['client-a', 0, 2, MAX_PAIR_TOKENS_PER_SECOND]]);
    expect(t.store.pending(NET, 'client-a', 'peer-a', 'm', 0, 2)?.fromPeer.tokens).toBe(3 * MAX_PAIR_TOKENS_PER_SECOND);
    // A client the coordinator never routed through this peer.
    refused(() => t.peerSays('peer-a', 'm', [0, 2], [['stranger', 0, 2, 5]]), /routed no such/);
    // A peer reporting for layers it does not hold.
    refused(() => t.peerSays('peer-a', 'm', [0, 2], [['client-a', 2, 4, 5]]), /holds layers \[0, 2\) of m, not \[2, 4\)/);
    // A client reporting a peer that does not serve that model (peer-c serves `other`), an unknown model, an unknown peer.
    refused(() => t.clientSays('client-a', 'm', [['peer-c', 0, 4, 5]]), /peer-c: the coordinator routed no such/);
    refused(() => t.clientSays('client-a', 'nope', [['peer-a', 0, 2, 5]]), /routed no such/);
    refused(() => t.clientSays('client-a', 'm', [['peer-zz', 0, 2, 5]]), /routed no such/);
    // Layers the route did not give that peer.
    refused(() => t.clientSays('client-a', 'm', [['peer-a', 0, 4, 5]]), /routed no such/);
    // Serving oneself earns nothing: the coordinator's route through the client itself makes no pair.
    t.route('peer-a', 'm', [['peer-a', 0, 2]]);
    refused(() => t.peerSays('peer-a', 'm', [0, 2], [['peer-a', 0, 2, 5]]), /routed no such/);
    expect(t.store.audit(NET)).toMatchObject({ balances: 0, minted: 0, moved: 0 });
    expect(t.store.journal(NET)).toEqual([]);
  });

  it('lets only the owner grant, read other keys and list the top; anyone reads their own', () => {
    const t = setup({ mode: 'credits-required', pricePerToken: 2 });
    t.store.handle(NET, 'client-a', { type: 'grant', requestId: 7, key: 'client-a', amount: 100 }, t.reply);
    t.store.handle(NET, 'client-a', { type: 'credits', requestId: 8, key: OWNER }, t.reply);
    t.store.handle(NET, 'client-a', { type: 'credits', requestId: 9, top: 5 }, t.reply);
    expect(t.errors.map((e) => e.type === 'error' && [e.code, e.ref, e.requestId])).toEqual([
      ['ERR_PERMISSION_DENIED', 'grant', 7],
      ['ERR_PERMISSION_DENIED', 'credits', 8],
      ['ERR_PERMISSION_DENIED', 'credits', 9],
    ]);
    t.store.handle(NET, OWNER, { type: 'grant', requestId: 10, key: 'client-a', amount: 100 }, t.reply);
    t.store.handle(NET, 'client-a', { type: 'credits', requestId: 11 }, t.reply);
    expect(t.replies.at(-1)).toEqual({ type: 'credits', requestId: 11, network: NET, rules: { mode: 'credits-required', pricePerToken: 2, pricePerCall: 1, grant: 0 }, balances: [{ key: 'client-a', balance: 100 }] });
  });

  it('refuses routes in credits-required mode below one token through the model, and grants a new key once', () => {
    const t = setup({ mode: 'credits-required', pricePerToken: 5 });
    const spec = { modelId: 'm', numLayers: 4 } as never;
    expect(t.store.refusesRoute(NET, 'client-a', spec, {})).toMatch(/holds 0 credits .* costs 20/);
    expect(t.store.refusesRoute(NET, 'client-a', spec, { start: 2 })).toMatch(/costs 10/);
    t.governance.setPolicy(NET, { credits: { grant: 25 } });
    expect(t.store.refusesRoute(NET, 'client-b', spec, {})).toBeUndefined();
    expect(t.store.balance(NET, 'client-b')).toBe(25);
    // Spent below the cost, it is refused again and not granted twice.
    t.route('client-b', 'm', [['peer-a', 0, 4]]);
    t.tick(1000);
    t.peerSays('peer-a', 'm', [0, 4], [['client-b', 0, 4, 2]]);
    t.clientSays('client-b', 'm', [['peer-a', 0, 4, 2]]);
    expect(t.store.balance(NET, 'client-b')).toBe(-15);
    expect(t.store.refusesRoute(NET, 'client-b', spec, {})).toMatch(/holds -15 credits/);
    expect(t.store.balance(NET, 'client-b')).toBe(-15);
    expect(t.store.journal(NET).filter((e) => e.kind === 'grant')).toHaveLength(1);
  });

  it('counts work peers reported and the client withholds against its balance, while the peers report it', () => {
    const t = setup({ mode: 'credits-required', pricePerToken: 1 });
    const spec = { modelId: 'm', numLayers: 4 } as never;
    t.store.handle(NET, OWNER, { type: 'grant', requestId: 1, key: 'client-w', amount: 100 }, t.reply);
    t.route('client-w', 'm', [['peer-a', 0, 4]]);
    t.tick(1000);
    // The client ran 25 tokens through the peer and never reports them: nothing settles...
    t.peerSays('peer-a', 'm', [0, 4], [['client-w', 0, 4, 25]]);
    expect(t.store.balance(NET, 'client-w')).toBe(100);
    // ...but its next route is refused: 100 less 100 unconfirmed leaves less than a token (4).
    expect(t.store.refusesRoute(NET, 'client-w', spec, {})).toMatch(/holds 100 credits .*, less 100 for work its peers reported and it has not confirmed/);
    // Confirmed, the work is paid; with a new grant the client is served again.
    t.clientSays('client-w', 'm', [['peer-a', 0, 4, 25]]);
    expect(t.store.balance(NET, 'client-w')).toBe(0);
    expect(t.store.refusesRoute(NET, 'client-w', spec, {})).toMatch(/holds 0 credits on/);
    t.store.handle(NET, OWNER, { type: 'grant', requestId: 2, key: 'client-w', amount: 50 }, t.reply);
    expect(t.store.refusesRoute(NET, 'client-w', spec, {})).toBeUndefined();
    // Claims a peer stopped making long ago (work the client never received, or lies) stop counting.
    t.peerSays('peer-a', 'm', [0, 4], [['client-w', 0, 4, 50]]);
    expect(t.store.refusesRoute(NET, 'client-w', spec, {})).toMatch(/less 200/);
    t.tick(UNCONFIRMED_MS + 1);
    expect(t.store.refusesRoute(NET, 'client-w', spec, {})).toBeUndefined();
  });
});

describe('a restart with a data folder', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('keeps every balance, the journal and the mode', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'aigrid-credits-'));
    dirs.push(dataDir);
    let server = await startSignalingServer({ dataDir, heartbeatMs: 1000 });
    const owner = await TestClient.join(server.wsUrl, 'credits-owner', NET);
    const peer = await TestClient.join(server.wsUrl, 'credits-peer', NET);
    const client = await TestClient.open(server.wsUrl);
    await client.hello('credits-client', NET, { ...CAPS, memoryBudgetMB: 0 });
    await client.next('welcome');
    const [ownerId, peerId, clientId] = [idOf('credits-owner'), idOf('credits-peer'), idOf('credits-client')];

    owner.send({ type: 'policy', credits: { mode: 'metered', pricePerToken: 3 } });
    expect((await owner.next('policy')).credits).toEqual({ mode: 'metered', pricePerToken: 3, pricePerCall: 1, grant: 0 });
    owner.send({ type: 'grant', requestId: 1, key: clientId, amount: 1000 });
    expect((await owner.next('credits', (m) => m.requestId === 1)).balances).toEqual([{ key: clientId, balance: 1000 }]);

    // A model served by the two members with memory; each reports ready on what it is assigned.
    const spec = { modelId: 'tiny', source: 'http://127.0.0.1:9/tiny', numLayers: 4, hiddenSize: 8, layerBytes: 1024 * 1024, weightDtype: 'f32', replication: 1 } as const;
    owner.send({ type: 'serve', model: spec });
    for (const member of [owner, peer]) {
      const assign = await member.next('assign');
      member.send({ type: 'status', modelId: 'tiny', start: assign.start, end: assign.end, state: 'ready', sessions: 0, tokensServed: 0 });
    }
    client.send({ type: 'route', requestId: 5, modelId: 'tiny' });
    const route = await client.next('route', (m) => m.requestId === 5);
    // Each hop reports the tokens it ran for the client, the client what it received.
    const members = new Map([[ownerId, owner], [peerId, peer]]);
    for (const hop of route.hops) {
      const held = members.get(hop.peerId)!.all('assign').at(-1)!;
      members.get(hop.peerId)!.send({ type: 'status', modelId: 'tiny', start: held.start, end: held.end, state: 'ready', sessions: 1, tokensServed: 10, usage: [{ client: clientId, start: hop.start, end: hop.end, tokens: 10 }] });
    }
    client.send({ type: 'usage', modelId: 'tiny', peers: route.hops.map((h) => ({ peerId: h.peerId, start: h.start, end: h.end, tokens: 10 })) });
    const ask = async (who: TestClient, message: ClientMessage & { requestId: number }) => {
      who.send(message);
      return who.next('credits', (m) => m.requestId === message.requestId);
    };
    let top: { key: string; balance: number }[] = [];
    for (let i = 0; i < 50 && !top.some((b) => b.key === clientId && b.balance === 1000 - 10 * 4 * 3); i++) {
      await new Promise((r) => setTimeout(r, 50));
      top = (await ask(owner, { type: 'credits', requestId: 100 + i, top: 10 })).balances;
    }
    const earned = (id: string) => route.hops.filter((h) => h.peerId === id).reduce((sum, h) => sum + 10 * (h.end - h.start) * 3, 0);
    const expected = [{ key: clientId, balance: 880 }, ...[ownerId, peerId].filter((id) => earned(id) > 0).map((id) => ({ key: id, balance: earned(id) }))];
    expect(top).toEqual(expect.arrayContaining(expected));
    expect(top).toHaveLength(expected.length);
    // The client reads its own balance; it may not read the owner's.
    expect((await ask(client, { type: 'credits', requestId: 200 })).balances).toEqual([{ key: clientId, balance: 880 }]);
    client.send({ type: 'credits', requestId: 201, key: ownerId });
    expect(await client.next('error', (m) => m.requestId === 201)).toMatchObject({ code: 'ERR_PERMISSION_DENIED', ref: 'credits' });
    // /metrics counts the credits moved, by entry kind.
    const metrics = await server.metrics.text();
    expect(metrics).toMatch(/aigrid_credits_total\{entry="spend"\} 120/);
    expect(metrics).toMatch(/aigrid_credits_total\{entry="earn"\} 120/);
    expect(metrics).toMatch(/aigrid_credits_total\{entry="grant"\} 1000/);
    // The server stops first: a network whose members all leave forgets its rules (not its ledger).
    await server.close();
    for (const c of [owner, peer, client]) await c.close();
    const file = JSON.parse(await readFile(join(dataDir, 'credits.json'), 'utf8')) as { networks: Record<string, { journal: unknown[] }> };
    expect(file.networks[NET]!.journal.length).toBeGreaterThanOrEqual(3);

    server = await startSignalingServer({ dataDir, heartbeatMs: 1000 });
    try {
      const back = await TestClient.join(server.wsUrl, 'credits-owner', NET);
      const again = await ask(back, { type: 'credits', requestId: 1, top: 10 });
      expect(again.balances).toEqual(top);
      expect(again.rules.mode).toBe('metered');
      await back.close();
    } finally {
      await server.close();
    }
  }, 30_000);
});

describe('servers sharing a Redis', () => {
  it('answer credits messages ERR_NOT_AVAILABLE, with the requestId, refuse a credits mode, and leave usage reports unanswered', async () => {
    const redis = await startRedisServer();
    const server = await startSignalingServer({ heartbeatMs: 60_000, redis: redis.url, redisLeaseMs: 1_000 });
    try {
      const owner = await TestClient.join(server.wsUrl, 'credits-redis-owner', NET);
      owner.send({ type: 'credits', requestId: 3 });
      expect(await owner.next('error', (m) => m.ref === 'credits')).toMatchObject({ code: 'ERR_NOT_AVAILABLE', requestId: 3 });
      owner.send({ type: 'grant', requestId: 4, key: idOf('credits-redis-owner'), amount: 5 });
      expect(await owner.next('error', (m) => m.ref === 'grant')).toMatchObject({ code: 'ERR_NOT_AVAILABLE', requestId: 4 });
      // Usage reports (every client sends them) go unanswered rather than drawing an error each.
      owner.send({ type: 'usage', modelId: 'm', peers: [{ peerId: idOf('credits-peer'), start: 0, end: 1, tokens: 1 }] });
      owner.send({ type: 'policy', credits: { mode: 'metered' } });
      expect(await owner.next('error', (m) => m.ref === 'policy')).toMatchObject({ code: 'ERR_NOT_AVAILABLE' });
      expect(owner.all('error').filter((m) => m.ref === 'usage')).toEqual([]);
      await owner.close();
    } finally {
      await server.close();
      await redis.close();
    }
  }, 30_000);
});
