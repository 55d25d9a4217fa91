// Credits over a real grid: four Node peers serve tiny-llama through the coordinator, a client
// generates through the SDK, and the ledger moves exactly tokens x layers x price per hop from the
// client to the peers that ran them, as both sides reported (peers with their status, the client
// with `usage`). A network that requires credits refuses the route of a key without them by name
// and serves one the owner granted; the gateway answers the client's balance.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridPeer } from '../client/grid/index.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import { connect } from '../client/sdk/node.ts';
import type { Grid } from '../client/sdk/grid.ts';
import { creditCalls, type CreditCalls } from '../client/sdk/credits-calls.ts';
import { startGateway } from '../client/gateway/index.ts';
import type { ModelSpec } from '../protocol/index.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { waitFor } from './helpers/wait.ts';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const NETWORK = 'credits-grid';
const MB = 1024 * 1024;
const PRICE = 2;

let net: GridNet;
const peers: GridPeer[] = [];
let owner: CreditCalls;
let grid: Grid;
let spec: ModelSpec;

beforeAll(async () => {
  net = await startGridNet();
  // Room for two of the four layers each: every route has at least two hops. The first to join owns the network.
  for (const id of ['credit-a', 'credit-b', 'credit-c', 'credit-d']) {
    const mesh = await net.join(NETWORK, id, 2);
    peers.push(new GridPeer({ mesh, backend: 'cpu', open: checkpointOpener(openCheckpointNode, { cache: false }), statusIntervalMs: 250 }));
  }
  owner = creditCalls(() => peers[0]!.mesh.signaling);
  spec = { ...(await net.spec('tiny-llama')), layerBytes: MB, replication: 2 };
  grid = await connect({ signal: net.server.wsUrl, network: NETWORK, verify: false });
  await grid.serve(spec);
  await waitFor(async () => (await grid.models.retrieve(spec.modelId)).coverage.ready.every((r) => r >= 2), 30_000, 'every layer ready on two peers');
}, 60_000);

afterAll(async () => {
  for (const p of peers) p.close();
  await grid?.close();
  await net.close();
});

/** Generates the golden tokens of a prompt; answers the tokens the route ran and the route. */
async function generate(index: number) {
  const g = (await net.model('tiny-llama')).golden[index]!;
  const out = await grid.generate({ model: spec.modelId, prompt: g.ids, maxTokens: g.greedy.length, temperature: 0 });
  expect(out.tokens).toEqual(g.greedy);
  expect(out.aigrid.failovers).toBe(0);
  // The prompt, then every generated token but the last goes through every layer once.
  return { ran: out.promptTokens + out.tokens.length - 1, route: out.aigrid.route };
}

const balanceOf = async (key: string) => (await owner.balances({ key }))[0]!.balance;

describe('credits over a grid', () => {
  it('moves exactly tokens x layers x price per hop from the client to the peers, in metered mode', async () => {
    expect(await owner.setRules({ mode: 'metered', pricePerToken: PRICE })).toEqual({ mode: 'metered', pricePerToken: PRICE, pricePerCall: 1, grant: 0 });
    const before = await Promise.all(peers.map((p) => balanceOf(p.peerId)));
    const { ran, route } = await generate(0);
    expect(route.length).toBeGreaterThanOrEqual(2);
    const cost = ran * spec.numLayers * PRICE;
    const share = (peerId: string) => route.filter((h) => h.peerId === peerId).reduce((sum, h) => sum + ran * (h.end - h.start) * PRICE, 0);
    // Five credits requests a poll, at most 5 a second per socket: one poll a second.
    await waitFor(async () => (await pause(1000), (await grid.credits.balance()).balance === -cost) && (await Promise.all(peers.map(async (p, i) => (await balanceOf(p.peerId)) === before[i]! + share(p.peerId)))).every(Boolean), 15_000, `the client charged ${cost} and each hop paid its share`);
    // More reports come (the peers' statuses, every 250 ms): nothing more is settled.
    await new Promise((r) => setTimeout(r, 1000));
    const statement = await grid.credits.balance();
    expect(statement).toEqual({ network: NETWORK, key: grid.peerId, balance: -cost, rules: { mode: 'metered', pricePerToken: PRICE, pricePerCall: 1, grant: 0 } });
    for (const [i, p] of peers.entries()) expect(await balanceOf(p.peerId)).toBe(before[i]! + share(p.peerId));
    // Nothing was minted: the balances add up to zero.
    const top = await owner.balances({ top: 100 });
    expect(top.reduce((sum, b) => sum + b.balance, 0)).toBe(0);

    // The gateway answers its own key's balance.
    const gateway = await startGateway({ grid, port: 0 });
    try {
      const res = await fetch(`${gateway.url}/credits`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ object: 'credits', ...statement });
    } finally {
      await gateway.close();
    }
  }, 60_000);

  it('refuses the route of a key without credits by name when credits are required, and serves one granted', async () => {
    await owner.setRules({ mode: 'credits-required' });
    const broke = await net.join(NETWORK, 'credit-broke', 0);
    const refusal = broke.signaling.requestRoute(spec.modelId);
    await expect(refusal).rejects.toMatchObject({ code: 'ERR_INSUFFICIENT_CREDITS', message: expect.stringMatching(/^route \d+: .* holds 0 credits .* costs 8/) });
    // The client that went below zero is refused too, through the SDK.
    await expect(generate(1)).rejects.toMatchObject({ code: 'ERR_INSUFFICIENT_CREDITS' });

    // The owner grants the client enough: it is served, and pays for exactly what it ran.
    const debt = (await grid.credits.balance()).balance;
    expect(await owner.grant(grid.peerId, 10_000 - debt)).toBe(10_000);
    const { ran } = await generate(1);
    const cost = ran * spec.numLayers * PRICE;
    await waitFor(async () => (await pause(250), (await grid.credits.balance()).balance === 10_000 - cost), 15_000, 'the granted client charged');
    // A grant for new keys: a key that never had credits gets it at its first route, once.
    await owner.setRules({ grant: 50 });
    const route = await broke.signaling.requestRoute(spec.modelId);
    expect(route.hops.length).toBeGreaterThan(0);
    await broke.signaling.requestRoute(spec.modelId);
    expect(await balanceOf(broke.peerId)).toBe(50);
    // Only the owner grants.
    await expect(creditCalls(() => broke.signaling).grant(broke.peerId, 1)).rejects.toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
  }, 60_000);
});
