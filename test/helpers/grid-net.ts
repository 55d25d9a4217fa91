// A grid for tests: a real signaling server, the fixture folder served over HTTP with Range (so
// peers load their layers as real peers do), Node meshes (@roamhq/wrtc), serving peers, clients.
import { Mesh } from '../../client/mesh/index.ts';
import { nodePlatform } from '../../client/mesh/node.ts';
import { GridPeer, modelSpecFromConfig, RemoteChain, RemoteModel, explicitRoutes, type GridPeerOptions, type RemoteChainOptions, type RemoteModelOptions, type RouteOptions } from '../../client/grid/index.ts';
import { checkpointOpener } from '../../client/model/checkpoint/opener.ts';
import { openModelNode } from '../../client/model/checkpoint/node.ts';
import { Head } from '../../client/model/head.ts';
import { readConfig } from '../../client/model/shard.ts';
import type { Capabilities, Hop, ModelSpec } from '../../protocol/index.ts';
import { startSignalingServer, type SignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';
import { FIXTURE_DIR, fixtures, type FixtureModel } from '../fixtures/index.ts';
import { openFixture } from './model-runtime.ts';
import { startRangeServer, type RangeServer } from './range-server.ts';
import { waitFor } from './wait.ts';
import { testIdentity } from './identities.ts';

export const CAPABILITIES: Capabilities = { kind: 'node', gpu: null, memoryBudgetMB: 256, throughput: { gflops: 1, backend: 'cpu' } };

export interface GridNet {
  server: SignalingServer;
  files: RangeServer;
  /** A mesh in `network` offering `memoryBudgetMB` (default 256), closed with the net. */
  join(network: string, peerId?: string, memoryBudgetMB?: number): Promise<Mesh>;
  /** A serving peer (CPU backend unless told otherwise) in `network`. */
  peer(network: string, peerId: string, options?: Partial<GridPeerOptions>): Promise<GridPeer>;
  /** What peers are told to load: the fixture model served over HTTP. */
  spec(name: string): Promise<ModelSpec>;
  /** The client's head (embedding, final norm, LM head) on the CPU. */
  head(name: string): Promise<Head>;
  model(name: string): Promise<FixtureModel>;
  /** A client chain over explicit routes. */
  chain(mesh: Mesh, name: string, routes: Hop[][], options?: Partial<RemoteChainOptions>): Promise<RemoteChain>;
  /** The whole model over the given routes: their first hop embeds, their last runs the head. */
  wholeModel(mesh: Mesh, name: string, routes: Hop[][], options: Partial<RemoteModelOptions> & { vocabSize: number }): Promise<RemoteModel>;
  close(): Promise<void>;
}

export async function startGridNet(options: SignalingServerOptions = {}): Promise<GridNet> {
  const server = await startSignalingServer({ heartbeatMs: 1000, ...options });
  const files = await startRangeServer(FIXTURE_DIR);
  const meshes: Mesh[] = [];
  const closers: { close(): void }[] = [];
  const heads = new Map<string, Promise<Head>>();
  const set = (await fixtures()).models;

  const join = async (network: string, peerId?: string, memoryBudgetMB = CAPABILITIES.memoryBudgetMB) => {
    const capabilities = { ...CAPABILITIES, memoryBudgetMB };
    const mesh = new Mesh({ ...nodePlatform(), signal: server.wsUrl, network, capabilities, autoConnect: false, maxConnections: 16, identity: peerId ? testIdentity(peerId) : undefined });
    meshes.push(mesh);
    await mesh.start();
    return mesh;
  };

  /** A client's route options over explicit routes, once every hop is in its directory (routes need that). */
  const routeOptions = async (mesh: Mesh, name: string, routes: Hop[][]): Promise<RouteOptions> => {
    const s = await spec(name);
    const ids = new Set(routes.flat().map((h) => h.peerId));
    await waitFor(() => [...ids].every((id) => mesh.peers().some((p) => p.peerId === id)), 5000, 'hops in the directory');
    return { mesh, modelId: name, numLayers: s.numLayers, hiddenSize: s.hiddenSize, routes: explicitRoutes(routes) };
  };

  const spec = async (name: string): Promise<ModelSpec> => {
    const config = readConfig(await openFixture(name));
    return {
      modelId: name,
      source: `${files.url}/${name}`,
      numLayers: config.numLayers,
      hiddenSize: config.hiddenSize,
      // What a layer really takes (peers refuse a spec that understates it).
      layerBytes: modelSpecFromConfig(config, { source: name }).layerBytes,
      weightDtype: 'f32',
      replication: 1,
    };
  };

  const net: GridNet = {
    server,
    files,
    join,
    spec,
    async peer(network, peerId, options = {}) {
      const mesh = await join(network, peerId);
      const peer = new GridPeer({ mesh, backend: 'cpu', open: checkpointOpener(openModelNode, { cache: false }), ...options });
      closers.push(peer);
      return peer;
    },
    head(name) {
      if (!heads.has(name)) heads.set(name, openFixture(name).then((r) => Head.load(r, { backend: 'cpu' })));
      return heads.get(name)!;
    },
    async model(name) {
      return set.find((m) => m.name === name)!;
    },
    async chain(mesh, name, routes, options = {}) {
      const chain = new RemoteChain({ ...(await routeOptions(mesh, name, routes)), ...options });
      closers.push(chain);
      return chain;
    },
    async wholeModel(mesh, name, routes, options) {
      const model = new RemoteModel({ ...(await routeOptions(mesh, name, routes)), ...options });
      closers.push(model);
      return model;
    },
    async close() {
      for (const c of closers.splice(0)) c.close();
      for (const m of meshes.splice(0)) m.close();
      for (const h of heads.values()) (await h).destroy();
      await files.close();
      await server.close();
    },
  };
  return net;
}

/** Hops of a route: [peer, start, end] triples. */
export function route(...hops: [GridPeer | Mesh | string, number, number][]): Hop[] {
  return hops.map(([p, start, end]) => ({ peerId: typeof p === 'string' ? p : p instanceof Mesh ? p.peerId : p.peerId, start, end }));
}
