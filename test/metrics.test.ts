// /metrics on the signaling server: strict Prometheus text whose series follow what the server
// does (serves, routes, status reports with load, verdicts, accusations, policy failures); the
// load a serving peer measures (LoadWindow) and reports; and the health bound: a ready peer whose
// reports stop leaves routes, and comes back when it reports again.
import { afterAll, describe, expect, it } from 'vitest';
import { GridPeer, meshRoutes, RemoteChain, type ServingStatus } from '../client/grid/index.ts';
import { LoadWindow } from '../client/grid/load-window.ts';
import { checkpointOpener } from '../client/model/checkpoint/opener.ts';
import { openCheckpointNode } from '../client/model/checkpoint/node.ts';
import { signLeaf, toBase64Url, type Capabilities, type ClientMessage, type LoadReport, type ModelSpec, type ServerMessage } from '../protocol/index.ts';
import { startGridNet, type GridNet } from './helpers/grid-net.ts';
import { idOf, testIdentity } from './helpers/identities.ts';
import { useSignalingServer } from './helpers/server-fixture.ts';
import { waitFor } from './helpers/wait.ts';
import { CAPS, sleep, TestClient } from './helpers/ws-client.ts';

const fixture = useSignalingServer();

const MODEL: ModelSpec = {
  modelId: 'metered',
  source: 'https://models.example/metered',
  numLayers: 8,
  hiddenSize: 64,
  layerBytes: 100 * 1024 * 1024,
  weightDtype: 'f16',
  replication: 1,
};
const LOAD: LoadReport = { tokensPerSecond: 12, utilisation: 0.25, hopLatencyMs: 40, firstTokenMs: 300 };

type Assign = Extract<ServerMessage, { type: 'assign' }>;
type Status = Extract<ClientMessage, { type: 'status' }>;

interface Exposition {
  types: Map<string, string>;
  samples: Map<string, number>;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? ([^ ]+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"/g;
const HISTOGRAM_SUFFIX = /_(bucket|sum|count)$/;

/**
 * Parses the Prometheus text format strictly: every line is `# HELP name text`, `# TYPE name
 * type`, `name{labels} value` (labels optional, no timestamps) or empty; every sample belongs to a
 * metric whose TYPE came first, a histogram's only as _bucket (with le), _sum or _count.
 */
function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const help = new Set<string>();
  const samples = new Map<string, number>();
  expect(text.endsWith('\n')).toBe(true);
  for (const [i, line] of text.slice(0, -1).split('\n').entries()) {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line === '') continue;
    if (line.startsWith('#')) {
      const comment = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (!comment) throw new Error(`${where}: a comment is # HELP or # TYPE`);
      const [, kind, name, rest] = comment as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
      if (kind === 'HELP') {
        if (help.has(name)) throw new Error(`${where}: second HELP`);
        help.add(name);
      } else {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) throw new Error(`${where}: bad type`);
        if (types.has(name)) throw new Error(`${where}: second TYPE`);
        types.set(name, rest);
      }
      continue;
    }
    const sample = SAMPLE.exec(line);
    if (!sample) throw new Error(`${where}: not a sample`);
    const [, name, labelText = '', valueText] = sample as unknown as [string, string, string | undefined, string];
    // Values are Go floats (strconv.ParseFloat, as Prometheus reads them): NaN and Inf in any case.
    if (!/^(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan)$/i.test(valueText)) throw new Error(`${where}: bad value`);
    const value = /nan/i.test(valueText) ? NaN : /inf/i.test(valueText) ? (valueText.startsWith('-') ? -Infinity : Infinity) : Number(valueText);
    const labels = [...labelText.matchAll(LABEL)].map(([, k, v]) => [k!, v!] as const);
    const base = name.replace(HISTOGRAM_SUFFIX, '');
    const type = types.get(name) ?? (types.get(base) === 'histogram' || types.get(base) === 'summary' ? types.get(base) : undefined);
    if (!type) throw new Error(`${where}: sample before its TYPE`);
    if (type === 'histogram' && name.endsWith('_bucket') && !labels.some(([k]) => k === 'le')) throw new Error(`${where}: bucket without le`);
    const key = seriesKey(name, Object.fromEntries(labels));
    if (samples.has(key)) throw new Error(`${where}: duplicate series`);
    samples.set(key, value);
  }
  return { types, samples };
}

function seriesKey(name: string, labels: Record<string, string> = {}): string {
  const inner = Object.entries(labels)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  return inner ? `${name}{${inner}}` : name;
}

async function scrape(): Promise<Exposition & { value(name: string, labels?: Record<string, string>): number | undefined }> {
  const res = await fetch(`${fixture.server.httpUrl}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4; charset=utf-8$/);
  const parsed = parseExposition(await res.text());
  return { ...parsed, value: (name, labels) => parsed.samples.get(seriesKey(name, labels)) };
}

/** Joins with a budget in layers of MODEL (100 MB each); a client offers none. */
async function join(name: string, layers: number, capabilities: Partial<Capabilities> = {}): Promise<TestClient> {
  const client = fixture.track(await TestClient.open(fixture.server.wsUrl));
  await client.hello(name, 'net', { ...CAPS, memoryBudgetMB: layers * 100, ...capabilities });
  await client.next('welcome');
  return client;
}

function status(m: Assign, fields: Partial<Status> = {}): Status {
  return { type: 'status', modelId: m.model.modelId, start: m.start, end: m.end, state: 'ready', sessions: 0, tokensServed: 0, ...fields };
}

let pings = 0;

/** Sends a status; the server has taken it once a ping sent after it is answered (one queue per socket). */
async function reported(peer: TestClient, message: Status): Promise<void> {
  const id = ++pings;
  peer.send(message);
  peer.send({ type: 'ping', id });
  await peer.next('pong', (p) => p.id === id);
}

/** An accusation whose shape parses and whose evidence cannot hold (its tickets are not the server's). */
async function forgedAccusation(accuser: string): Promise<ClientMessage> {
  const leaf = (name: string) =>
    signLeaf(testIdentity(name), { network: 'net', modelId: MODEL.modelId, sessionId: '0123456789abcdef', client: idOf(accuser), start: 0, end: 4, requestId: 5 }, new Uint8Array(32), new Uint8Array(32));
  const segment = async (name: string) => ({
    hops: [{ peerId: idOf(name), start: 0, end: 4 }],
    ticket: { expires: Date.now() + 60_000, signature: 'S'.repeat(86) },
    first: await leaf(name),
    last: await leaf(name),
    output: { shape: 'AAAAAAAAAAAA', valuesRoot: 'A'.repeat(43), chunks: 1, picks: [{ index: 0, bytes: toBase64Url(new Uint8Array(64)), path: [] }] },
  });
  return { type: 'accuse', id: 1, modelId: MODEL.modelId, requestId: 5, segments: await Promise.all(['peer-a', 'peer-b', 'peer-c'].map(segment)) } as ClientMessage;
}

describe('/metrics', () => {
  it('parses as Prometheus text, and its series follow serves, routes, reports, verdicts and accusations', async () => {
    await fixture.start();
    let m = await scrape();
    expect(m.types.get('aigrid_routes_total')).toBe('counter');
    expect(m.types.get('aigrid_hop_latency_seconds')).toBe('histogram');
    expect(m.value('aigrid_peers', { kind: 'node', backend: 'cpu' })).toBe(0);
    expect(m.value('aigrid_routes_total', { outcome: 'ok' })).toBe(0);
    expect(m.value('aigrid_models', { coverage: 'none' })).toBe(0);
    expect(m.samples.has('process_cpu_user_seconds_total')).toBe(true); // the process's own, shared by its servers

    const a = await join('peer-a', 4);
    const b = await join('peer-b', 4);
    const c = await join('client-c', 0, { kind: 'browser', throughput: { gflops: 3, backend: 'webgpu' } });
    a.send({ type: 'serve', model: MODEL });
    const [assignA, assignB] = [await a.next('assign'), await b.next('assign')];
    m = await scrape();
    expect(m.value('aigrid_networks')).toBe(1);
    expect(m.value('aigrid_peers', { kind: 'node', backend: 'cpu' })).toBe(2);
    expect(m.value('aigrid_peers', { kind: 'browser', backend: 'webgpu' })).toBe(1);
    expect(m.value('aigrid_models', { coverage: 'none' })).toBe(1);
    expect(m.value('aigrid_model_layers')).toBe(8);
    expect(m.value('aigrid_layer_copies', { state: 'assigned' })).toBe(8);
    expect(m.value('aigrid_layer_copies', { state: 'ready' })).toBe(0);
    expect(m.value('aigrid_serving_assignments', { state: 'loading' })).toBe(2);

    c.send({ type: 'route', requestId: 1, modelId: MODEL.modelId });
    await c.next('error', (e) => e.code === 'ERR_NO_ROUTE');

    await reported(a, status(assignA, { load: LOAD }));
    await reported(b, status(assignB, { load: { ...LOAD, hopLatencyMs: 60 } }));
    m = await scrape();
    expect(m.value('aigrid_models', { coverage: 'complete' })).toBe(1);
    expect(m.value('aigrid_models', { coverage: 'none' })).toBe(0);
    expect(m.value('aigrid_layer_copies', { state: 'ready' })).toBe(8);
    expect(m.value('aigrid_serving_assignments', { state: 'ready' })).toBe(2);
    expect(m.value('aigrid_status_reports_total', { outcome: 'accepted' })).toBe(2);
    expect(m.value('aigrid_peer_tokens_per_second_count')).toBe(2);
    expect(m.value('aigrid_peer_tokens_per_second_sum')).toBe(24);
    expect(m.value('aigrid_hop_latency_seconds_sum')).toBeCloseTo(0.1, 9);
    expect(m.value('aigrid_hop_latency_seconds_bucket', { le: '0.05' })).toBe(1);
    expect(m.value('aigrid_hop_latency_seconds_bucket', { le: '0.1' })).toBe(2);
    expect(m.value('aigrid_hop_time_to_first_token_seconds_sum')).toBeCloseTo(0.6, 9);
    expect(m.value('aigrid_peer_utilisation_bucket', { le: '0.25' })).toBe(2);

    // Tokens count from every report (the difference), load once per half report interval, so a
    // peer reporting at the rate limit weighs no more than one on the usual cadence.
    await reported(a, status(assignA, { tokensServed: 100, load: { ...LOAD, tokensPerSecond: 999 } }));
    await reported(a, status(assignA, { tokensServed: 130, load: { ...LOAD, tokensPerSecond: 999 } }));
    // A report for a range the peer does not hold is refused, and counted as such.
    a.send(status(assignA, { end: 3 }));
    await a.next('error', (e) => e.ref === 'status');
    m = await scrape();
    expect(m.value('aigrid_tokens_served_total')).toBe(130);
    expect(m.value('aigrid_peer_tokens_per_second_count')).toBe(2);
    expect(m.value('aigrid_status_reports_total', { outcome: 'accepted' })).toBe(4);
    expect(m.value('aigrid_status_reports_total', { outcome: 'refused' })).toBe(1);

    c.send({ type: 'route', requestId: 2, modelId: MODEL.modelId });
    expect((await c.next('route')).hops.map((h) => h.peerId)).toEqual([idOf('peer-a'), idOf('peer-b')]);
    c.send({ type: 'route', requestId: 3, modelId: MODEL.modelId, start: 6, end: 2 });
    await c.next('error', (e) => e.code === 'ERR_INVALID_ARGUMENT' && e.requestId === 3);
    c.send({ type: 'verdict', modelId: MODEL.modelId, verdicts: [{ peerId: idOf('peer-a'), result: 'verified' }, { peerId: idOf('peer-b'), result: 'timeout' }] });
    c.send(await forgedAccusation('client-c'));
    expect(await c.next('judged', (j) => j.id === 1)).toMatchObject({ counted: false, code: 'ERR_BAD_EVIDENCE' });
    fixture.server.metrics.onPolicyFailure('route');
    fixture.server.metrics.onPolicyFailure('not a hook name');
    m = await scrape();
    expect(m.value('aigrid_routes_total', { outcome: 'ok' })).toBe(1);
    expect(m.value('aigrid_routes_total', { outcome: 'no_route' })).toBe(1);
    expect(m.value('aigrid_routes_total', { outcome: 'error' })).toBe(1);
    expect(m.value('aigrid_verdicts_total', { result: 'verified' })).toBe(1);
    expect(m.value('aigrid_verdicts_total', { result: 'timeout' })).toBe(1);
    expect(m.value('aigrid_verdicts_total', { result: 'wrong' })).toBe(0);
    expect(m.value('aigrid_accusations_total', { outcome: 'refused' })).toBe(1);
    expect(m.value('aigrid_policy_failures_total', { hook: 'route' })).toBe(1);
    expect(m.value('aigrid_policy_failures_total', { hook: 'other' })).toBe(1);
    // No series names a network, model or peer: the label values are all from fixed sets.
    for (const key of m.samples.keys()) expect(key).not.toMatch(/net"|metered|peer-|client-c/);
  });

  it('takes a server on its own: two servers in one process count apart', async () => {
    await fixture.start();
    const other = await (await import('../signaling/server.ts')).startSignalingServer({ heartbeatMs: 60_000 });
    try {
      fixture.server.metrics.onPolicyFailure('serve');
      const text = await (await fetch(`${other.httpUrl}/metrics`)).text();
      expect(parseExposition(text).samples.get(seriesKey('aigrid_policy_failures_total', { hook: 'serve' }))).toBeUndefined();
      expect((await scrape()).value('aigrid_policy_failures_total', { hook: 'serve' })).toBe(1);
    } finally {
      await other.close();
    }
  });

  it('refuses a status whose load is out of range, naming the field, and changes nothing', async () => {
    await fixture.start();
    const a = await join('peer-a', 8);
    const c = await join('client-c', 0);
    a.send({ type: 'serve', model: MODEL });
    const assign = await a.next('assign');
    await reported(a, status(assign, { load: LOAD }));
    const before = (await scrape()).samples;

    const hostile: [Partial<LoadReport> | Record<string, unknown>, RegExp][] = [
      [{ ...LOAD, utilisation: 1.5 }, /load\.utilisation/],
      [{ ...LOAD, tokensPerSecond: -1 }, /load\.tokensPerSecond/],
      [{ ...LOAD, hopLatencyMs: 600_001 }, /load\.hopLatencyMs/],
      [{ ...LOAD, firstTokenMs: null }, /load\.firstTokenMs/],
      [{ utilisation: 0.5 }, /load\.tokensPerSecond/],
    ];
    for (const [load, field] of hostile) {
      // Says loading: had it been taken, the peer would have left the routes.
      a.send(JSON.stringify({ ...status(assign, { state: 'loading', tokensServed: 10 ** 9 }), load }));
      const refused = await a.next('error', (e) => e.ref === 'status');
      expect(refused.code).toBe('ERR_INVALID_MESSAGE');
      expect(refused.message).toMatch(field);
    }
    c.send({ type: 'route', requestId: 1, modelId: MODEL.modelId });
    expect((await c.next('route')).hops).toEqual([{ peerId: idOf('peer-a'), start: 0, end: 8 }]);
    const after = (await scrape()).samples;
    for (const name of ['aigrid_status_reports_total{outcome="accepted"}', 'aigrid_status_reports_total{outcome="refused"}', 'aigrid_tokens_served_total', 'aigrid_peer_utilisation_count', 'aigrid_peer_tokens_per_second_sum', 'aigrid_serving_assignments{state="ready"}']) {
      expect([name, after.get(name)]).toEqual([name, before.get(name)]);
    }
  });
});

describe('health', () => {
  it('leaves a ready peer whose reports stop out of routes after the bound, and takes it back when it reports', async () => {
    await fixture.start({ unhealthyAfterMs: 400 });
    const a = await join('peer-a', 8);
    const c = await join('client-c', 0);
    a.send({ type: 'serve', model: MODEL });
    const assign = await a.next('assign');
    await reported(a, status(assign));
    c.send({ type: 'route', requestId: 1, modelId: MODEL.modelId });
    await c.next('route');

    await sleep(500);
    c.send({ type: 'route', requestId: 2, modelId: MODEL.modelId });
    const none = await c.next('error', (e) => e.requestId === 2);
    expect(none.code).toBe('ERR_NO_ROUTE');
    expect(none.message).toMatch(/\(0 of 1 assigned peers ready; 1 silent for over 400 ms\)/);
    c.send({ type: 'models' });
    expect((await c.next('models')).models[0]!.ready).toEqual(new Array(8).fill(0));
    const view = (await (await fetch(`${fixture.server.httpUrl}/api/networks/net`)).json()) as { models: { ready: number[] }[] };
    expect(view.models[0]!.ready).toEqual(new Array(8).fill(0));
    let m = await scrape();
    expect(m.value('aigrid_serving_assignments', { state: 'silent' })).toBe(1);
    expect(m.value('aigrid_layer_copies', { state: 'ready' })).toBe(0);

    await reported(a, status(assign));
    c.send({ type: 'route', requestId: 3, modelId: MODEL.modelId });
    expect((await c.next('route', (r) => r.requestId === 3)).hops).toEqual([{ peerId: idOf('peer-a'), start: 0, end: 8 }]);
    m = await scrape();
    expect(m.value('aigrid_serving_assignments', { state: 'silent' })).toBe(0);
    expect(m.value('aigrid_serving_assignments', { state: 'ready' })).toBe(1);
  });
});

describe('LoadWindow', () => {
  it('reports tokens per second, busy share and median pass times over its window', () => {
    let now = 100_000;
    const load = new LoadWindow(10_000, () => now);
    expect(load.report()).toEqual({ tokensPerSecond: 0, utilisation: 0 });
    // A prefill of 50 tokens in 400 ms, then decode steps of 20, 30 and 40 ms, two overlapping.
    let pass = load.begin();
    now += 400;
    pass.end(50, true);
    now += 600;
    const steps = [load.begin(), load.begin()];
    now += 20;
    steps[0]!.end(1);
    now += 10;
    steps[1]!.end(1);
    pass = load.begin();
    now += 40;
    pass.end(1);
    now = 102_000;
    const failed = load.begin();
    now += 100;
    failed.end(); // a failed pass: busy, but neither tokens nor a sample
    now = 104_000;
    const report = load.report();
    expect(report.tokensPerSecond).toBe(13.25); // 53 tokens in the 4 s since it began
    expect(report.utilisation).toBe(0.143); // (400 + 30 + 40 + 100) ms busy of 4 s; overlapping steps count once
    expect(report.hopLatencyMs).toBe(30);
    expect(report.firstTokenMs).toBe(400);

    // A pass still running counts as busy up to now; passes older than the window leave it.
    now = 112_000;
    load.begin();
    now = 113_000;
    expect(load.report()).toEqual({ tokensPerSecond: 0, utilisation: 0.111 }); // 1 s of the 9 s since the window's first slot
  });
});

describe('a grid peer', () => {
  let net: GridNet | undefined;
  afterAll(() => net?.close());

  it('reports its load with its status, and the coordinator counts its tokens', async () => {
    net = await startGridNet({ unhealthyAfterMs: 2_000 });
    const spec = { ...(await net.spec('tiny-llama')), layerBytes: 1024 * 1024 };
    const statuses: ServingStatus[] = [];
    const peer = new GridPeer({ mesh: await net.join('metered', 'peer-a', 64), backend: 'cpu', statusIntervalMs: 200, open: checkpointOpener(openCheckpointNode, { cache: false }) });
    peer.on('status', (s) => statuses.push(s));
    const client = await net.join('metered', 'the-client', 0);
    try {
      client.signaling.send({ type: 'serve', model: spec });
      await waitFor(() => statuses.some((s) => s.state === 'ready'), 30_000, 'the peer ready');
      const chain = new RemoteChain({ mesh: client, modelId: spec.modelId, numLayers: spec.numLayers, hiddenSize: spec.hiddenSize, routes: meshRoutes(client, spec.modelId) });
      const g = (await net.model('tiny-llama')).golden[0]!;
      const result = await chain.generate(await net.head('tiny-llama'), g.ids, { maxTokens: 4, temperature: 0, sessionId: 'metered' });
      expect(result.tokens).toEqual(g.greedy.slice(0, 4));
      chain.close();
      // Past the health bound: the periodic reports keep it on routes, and carry the load.
      await sleep(2_500);
      const last = statuses.at(-1)!;
      expect(last.load!.tokensPerSecond).toBeGreaterThan(0);
      expect(last.load!.utilisation).toBeGreaterThan(0);
      expect(last.load!.firstTokenMs).toBeGreaterThan(0);
      expect(last.load!.hopLatencyMs).toBeGreaterThan(0);
      const text = await (await fetch(`${net.server.httpUrl}/metrics`)).text();
      const { samples } = parseExposition(text);
      expect(samples.get('aigrid_tokens_served_total')).toBe(last.tokensServed);
      expect(samples.get('aigrid_peer_tokens_per_second_count')).toBeGreaterThanOrEqual(1);
      expect(samples.get(seriesKey('aigrid_serving_assignments', { state: 'ready' }))).toBe(1);
      expect(samples.get(seriesKey('aigrid_routes_total', { outcome: 'ok' }))).toBeGreaterThanOrEqual(1);
    } finally {
      peer.close();
    }
  });
});
