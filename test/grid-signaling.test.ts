// The serving messages between peers and the signaling server, against a scripted server: route
// requests (reply, ERR_NO_ROUTE, timeout), assign/unassign/models events, and a GridPeer that
// follows an assignment and reports loading -> ready (or failed) with status messages.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import type { AddressInfo } from 'node:net';
import { GridPeer } from '../client/grid/index.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import { Mesh } from '../client/mesh/index.ts';
import { nodePlatform } from '../client/mesh/node.ts';
import { PROTOCOL_VERSION, type AigridError, type ClientMessage, type ModelCoverage, type ModelSpec, type ServerMessage } from '../protocol/index.ts';
import { FIXTURE_DIR } from './fixtures/index.ts';
import { CAPABILITIES } from './helpers/grid-net.ts';
import { startRangeServer, type RangeServer } from './helpers/range-server.ts';
import { waitFor } from './helpers/wait.ts';

let wss: WebSocketServer;
let url: string;
let files: RangeServer;
const received: ClientMessage[] = [];
let socket: WebSocket | undefined;
const meshes: Mesh[] = [];

const hops = [{ peerId: 'peer-one', start: 0, end: 2 }, { peerId: 'peer-two', start: 2, end: 4 }];

/** A server that welcomes, answers routes by model id, and records what it hears. */
function script(ws: WebSocket, msg: ClientMessage): void {
  const reply = (m: ServerMessage) => ws.send(JSON.stringify(m));
  if (msg.type === 'hello') {
    reply({ type: 'welcome', protocolVersion: PROTOCOL_VERSION, peerId: msg.peerId, network: msg.network, peers: [], heartbeatMs: 5000, limits: { maxFrameBytes: 65536, messagesPerSecond: 50 } });
  } else if (msg.type === 'route' && msg.modelId === 'none') {
    reply({ type: 'error', code: 'ERR_NO_ROUTE', message: 'no ready peers cover none', ref: 'route', requestId: msg.requestId });
  } else if (msg.type === 'route' && msg.modelId === 'late-none') {
    // Answered after the requests that follow it: only its request id says which one failed.
    setTimeout(() => reply({ type: 'error', code: 'ERR_NO_ROUTE', message: 'late', ref: 'route', requestId: msg.requestId }), 100);
  } else if (msg.type === 'route' && msg.modelId !== 'silent') {
    reply({ type: 'route', requestId: msg.requestId, modelId: msg.modelId, hops });
  }
}

beforeAll(async () => {
  files = await startRangeServer(FIXTURE_DIR);
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('connection', (ws) => {
    socket = ws;
    // It checks no signature: the challenge only lets the client say hello.
    ws.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) } satisfies ServerMessage));
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as ClientMessage;
      received.push(msg);
      script(ws, msg);
    });
  });
  await new Promise((r) => wss.once('listening', r));
  url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
});
afterEach(() => {
  for (const m of meshes.splice(0)) m.close();
  received.length = 0;
});
afterAll(async () => {
  await files.close();
  await new Promise((r) => wss.close(r));
});

async function join(): Promise<Mesh> {
  const mesh = new Mesh({ ...nodePlatform(), signal: url, network: 'net', capabilities: CAPABILITIES, autoConnect: false });
  meshes.push(mesh);
  await mesh.start();
  return mesh;
}

const push = (m: ServerMessage) => socket!.send(JSON.stringify(m));

describe('route requests', () => {
  it('resolves with the hops, rejects with the server error or a timeout', async () => {
    const { signaling } = await join();
    const replies: unknown[] = [];
    signaling.on('routeReply', (r) => replies.push(r));
    expect((await signaling.requestRoute('tiny-llama', { exclude: ['peer-bad'] })).hops).toEqual(hops);
    expect(received.find((m) => m.type === 'route')).toMatchObject({ modelId: 'tiny-llama', exclude: ['peer-bad'] });
    expect(replies).toHaveLength(1);
    await expect(signaling.requestRoute('none')).rejects.toMatchObject({ code: 'ERR_NO_ROUTE' });
    await expect(signaling.requestRoute('silent', { timeoutMs: 200 })).rejects.toMatchObject({ code: 'ERR_SIGNALING_TIMEOUT' });
    // Concurrent requests are told apart by request id.
    const both = await Promise.all([signaling.requestRoute('a', { start: 0, end: 2 }), signaling.requestRoute('b')]);
    expect(both.map((r) => r.hops)).toEqual([hops, hops]);
    // An error answered out of order settles the request it names, not the oldest pending one.
    const older = signaling.requestRoute('silent', { timeoutMs: 500 });
    const late = signaling.requestRoute('late-none', { timeoutMs: 500 });
    const settled: string[] = [];
    await Promise.all([
      older.then(() => settled.push('older ok'), (e: AigridError) => settled.push(`older ${e.code}`)),
      late.then(() => settled.push('late ok'), (e: AigridError) => settled.push(`late ${e.code}`)),
    ]);
    expect(settled).toEqual(['late ERR_NO_ROUTE', 'older ERR_SIGNALING_TIMEOUT']);
    const pending = signaling.requestRoute('silent');
    signaling.close();
    await expect(pending).rejects.toMatchObject({ code: 'ERR_SIGNALING_CLOSED' });
  });
});

describe('assignments from the server', () => {
  it('a GridPeer loads what it is assigned, reports its state, and drops it when unassigned', async () => {
    const mesh = await join();
    const peer = new GridPeer({ mesh, backend: 'cpu', open: checkpointOpener(openCheckpointNode, { cache: false }) });
    const models: ModelCoverage[][] = [];
    mesh.signaling.on('models', (m) => models.push(m));
    const model: ModelSpec = {
      modelId: 'tiny-llama', source: `${files.url}/tiny-llama`, numLayers: 4, hiddenSize: 64, layerBytes: 1024 * 1024, weightDtype: 'f32', replication: 1,
    };
    push({ type: 'assign', model, start: 1, end: 3 });
    const statuses = () => received.filter((m): m is Extract<ClientMessage, { type: 'status' }> => m.type === 'status');
    await waitFor(() => statuses().some((s) => s.state === 'ready'), 10_000, 'ready status');
    expect(statuses().map((s) => [s.modelId, s.start, s.end, s.state])).toEqual([['tiny-llama', 1, 3, 'loading'], ['tiny-llama', 1, 3, 'ready']]);
    expect(files.requests.filter((r) => r.status === 206).length).toBeGreaterThan(0);

    push({ type: 'models', models: [{ model, assigned: [0, 1, 1, 0], ready: [0, 1, 1, 0] }] });
    await waitFor(() => models.length === 1, 5000, 'models event');

    // A model whose files are missing fails, and the server hears why.
    push({ type: 'assign', model: { ...model, modelId: 'missing', source: `${files.url}/nowhere` }, start: 0, end: 1 });
    await waitFor(() => statuses().some((s) => s.state === 'failed'), 10_000, 'failed status');
    expect(statuses().find((s) => s.state === 'failed')).toMatchObject({ modelId: 'missing', detail: expect.any(String) });

    push({ type: 'unassign', modelId: 'tiny-llama' });
    await waitFor(() => !peer.status().some((s) => s.modelId === 'tiny-llama'), 5000, 'unassigned');
    peer.close();
  });
});
