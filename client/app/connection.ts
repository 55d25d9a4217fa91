// The tab's one connection to a network: a Mesh wrapped in the SDK's Grid, shared by every page and
// by the scripting API (window.aigridApp). Listeners hear each join and leave.
import { browserIdentity } from '../mesh/browser-identity.ts';
import { Mesh, detectCapabilities } from '../mesh/index.ts';
import { checkpointOpener, openModel } from '../model/checkpoint/index.ts';
import { AigridError, Grid } from '../sdk/index.ts';

export interface JoinOptions {
  network: string;
  /** Memory offered to the coordinator before contributing (the pages start at 0). */
  memoryBudgetMB?: number;
  signal?: string;
  maxConnections?: number;
  /** Link to every peer at once (default); the pages link only to the hops of their routes. */
  autoConnect?: boolean;
}

export interface Connection {
  network: string;
  /** The signaling server's HTTP base (its /api views), from the signaling URL. */
  httpBase: string;
  mesh: Mesh;
  grid: Grid;
}

/** Something serving layers on the mesh; only one runs at a time (see serveWith). */
export interface Server {
  stop(): void;
}

export const params = new URLSearchParams(location.search);
export const defaultSignal = params.get('signal') ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/signal`;

let current: Connection | null = null;
let server: Server | null = null;
/** Bumped by every join and leave, so a join overtaken while it measured the CPU gives up. */
let generation = 0;
const listeners = new Set<(c: Connection | null) => void>();

export function connection(): Connection | null {
  return current;
}

/** Calls fn now and on every join and leave; returns an unsubscribe function. */
export function onConnection(fn: (c: Connection | null) => void): () => void {
  listeners.add(fn);
  fn(current);
  return () => listeners.delete(fn);
}

export async function join(options: JoinOptions): Promise<Connection> {
  leave();
  const mine = ++generation;
  const gpu = navigator.gpu;
  const capabilities = await detectCapabilities({ kind: 'browser', memoryBudgetMB: options.memoryBudgetMB ?? 0, gpu, agent: navigator.userAgent });
  const identity = await browserIdentity('client');
  if (mine !== generation) throw overtaken();
  const mesh = new Mesh({
    identity,
    signal: options.signal ?? defaultSignal,
    network: options.network,
    capabilities,
    maxConnections: options.maxConnections,
    autoConnect: options.autoConnect,
  });
  const grid = new Grid({
    mesh,
    backend: 'auto',
    gpu: async () => gpu,
    open: checkpointOpener(openModel, {}),
    peerIdentity: () => browserIdentity('peer'),
  });
  const joined: Connection = { network: options.network, httpBase: httpBaseOf(options.signal ?? defaultSignal), mesh, grid };
  current = joined;
  try {
    await mesh.start();
  } catch (err) {
    if (current === joined) leave();
    else grid.close();
    throw mine === generation ? err : overtaken();
  }
  notify();
  return joined;
}

const overtaken = () => new AigridError('ERR_ABORTED', 'another join or a leave replaced this join');

export function leave(): void {
  generation++;
  server?.stop();
  server = null;
  if (!current) return;
  current.grid.close();
  current = null;
  notify();
}

/** Makes `next` the one thing serving layers in this tab, stopping the previous one. */
export function serveWith(next: Server): void {
  if (server !== next) server?.stop();
  server = next;
}

function notify(): void {
  for (const fn of listeners) fn(current);
}

/** ws://host:port/signal -> http://host:port (wss -> https). */
export function httpBaseOf(signal: string): string {
  const url = new URL(signal);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  url.pathname = url.pathname.replace(/\/signal\/?$/, '');
  return url.toString().replace(/\/$/, '');
}
