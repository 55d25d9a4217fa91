// Blocks, vDAGs and policies on signaling processes sharing a Redis: what a client saves through one
// process is listed, changed and deleted through another, a server policy saved on one process
// runs on the other, a process started later reads them all from Redis, they outlive a rolling restart
// of the processes, and they go with the network's last member (as its rules do).
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Grid } from '../client/sdk/node.ts';
import { startSignalingServer, type SignalingServer } from '../signaling/server.ts';
import { testIdentity } from './helpers/identities.ts';
import { startRedisServer, type RedisServer } from './helpers/redis-server.ts';
import { CAPS, TestClient } from './helpers/ws-client.ts';
import { waitFor } from './helpers/wait.ts';

const NETWORK = 'shared-registries';
const TEXT = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] };
const BLOCK = { uri: 'llm.shared:1', model: { kind: 'llm' as const, modelId: 'tiny-llama' }, tags: ['task=chat'], inputSchema: TEXT, outputSchema: TEXT };
// Clients (no memory offered) pass; serving peers offering less than minMB are refused.
const SMALL_PEERS = 'function eval(parameters, input) { const mb = input.capabilities.memoryBudgetMB; return { admit: mb === 0 || mb >= parameters.minMB }; }';

let redis: RedisServer;
const servers: SignalingServer[] = [];

const start = async () => {
  const server = await startSignalingServer({ heartbeatMs: 60_000, redis: redis.url, redisLeaseMs: 1_000, recoveryMs: 1_000 });
  servers.push(server);
  return server;
};
const grids: Grid[] = [];
const join = async (server: SignalingServer, name: string) => {
  const grid = await connect({ signal: server.wsUrl, network: NETWORK, identity: testIdentity(name) });
  grids.push(grid);
  return grid;
};

beforeAll(async () => {
  redis = await startRedisServer();
}, 30_000);

afterAll(async () => {
  for (const grid of grids) grid.close();
  for (const server of servers) await server.close().catch(() => {});
  await redis?.close();
});

describe('registries on processes sharing a Redis', () => {
  it('are the same on every process, through changes, a later process and restarts, and go with the last member', async () => {
    const [a, b] = [await start(), await start()];
    const owner = await join(a, 'shared-owner');
    const other = await join(b, 'shared-other');

    // Saved on A, seen on B; saved on B, seen on A.
    const block = await owner.blocks.create(BLOCK);
    await waitFor(async () => (await other.blocks.list()).length === 1, 5000, 'the block seen through B');
    expect(await other.blocks.get('llm.shared:1')).toEqual(block);
    await other.blocks.create({ ...BLOCK, uri: 'llm.other:1' });
    await waitFor(async () => (await owner.blocks.list()).length === 2, 5000, 'B\'s block seen through A');
    await owner.vdags.create({ id: 'chain', nodes: [{ id: 'one', block: 'llm.shared:1' }, { id: 'two', block: 'llm.other:1' }], connections: [{ from: 'one', to: 'two' }], input: 'one', output: 'two' });
    await owner.policies.create({ id: 'big-peers', hook: 'admission', code: SMALL_PEERS, parameters: { minMB: 64 } });
    await waitFor(async () => (await other.vdags.list()).length === 1 && (await other.policies.list()).length === 1, 5000, 'the vDAG and policy seen through B');

    // Ownership holds across processes: B's client may not change A's owner's block; the owner may change B's.
    await expect(other.blocks.delete('llm.shared:1')).rejects.toMatchObject({ code: 'ERR_PERMISSION_DENIED' });
    await owner.blocks.update({ ...BLOCK, uri: 'llm.other:1', tags: ['task=chat', 'edited'] });
    await waitFor(async () => (await other.blocks.get('llm.other:1')).tags.includes('edited'), 5000, 'the owner\'s edit seen through B');

    // The admission policy saved through A runs on B (whose sandbox workers start when the policy
    // arrives): a small peer joining there is refused by name.
    await waitFor(() => (b.policySandbox()?.ready ?? 0) >= 1, 30_000, 'B\'s policy sandbox ready');
    const small = await TestClient.open(b.wsUrl);
    await small.hello('shared-small', NETWORK, { ...CAPS, memoryBudgetMB: 8 });
    expect(await small.next('error', (m) => m.ref === 'hello', 10_000)).toMatchObject({ code: 'ERR_ADMISSION_REFUSED' });
    await small.close();

    // A process started later reads them from Redis.
    const c = await start();
    const late = await join(c, 'shared-late');
    expect((await late.blocks.list()).map((x) => x.uri).sort()).toEqual(['llm.other:1', 'llm.shared:1']);
    expect((await late.vdags.list()).map((v) => v.id)).toEqual(['chain']);
    expect((await late.policies.list()).map((p) => p.id)).toEqual(['big-peers']);

    // A rolling restart: A and B stop (their members with them) and D starts, while C keeps the
    // network alive; D reads everything back from Redis.
    const before = { blocks: await late.blocks.list(), vdags: await late.vdags.list(), policies: await late.policies.list() };
    for (const server of [a, b]) await server.close();
    owner.close();
    other.close();
    const d = await start();
    const back = await join(d, 'shared-back');
    expect({ blocks: await back.blocks.list(), vdags: await back.vdags.list(), policies: await back.policies.list() }).toEqual(before);

    // The network's last member leaving takes them with its rules.
    back.close();
    late.close();
    const admin = new Redis(redis.url);
    try {
      await waitFor(async () => (await admin.hlen('aigrid:records')) === 0, 10_000, 'the records gone from Redis');
    } finally {
      admin.disconnect();
    }
    const fresh = await join(d, 'shared-fresh');
    expect(await fresh.blocks.list()).toEqual([]);
  }, 90_000);
});
