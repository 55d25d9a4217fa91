// bench:load's second part: concurrent chat requests through the OpenAI gateway (default limits)
// on a CPU grid of Node peers serving tiny-llama, started as test/gateway-load.test.ts does: a real
// signaling server, the fixture folder over HTTP, GridPeers on Node meshes (@roamhq/wrtc), an
// owner that serves the model, and the gateway on a grid client of its own (verify: false, as there).
import { startGateway } from '../../client/gateway/index.ts';
import { connect, type Grid } from '../../client/sdk/node.ts';
import { startGridNet } from '../helpers/grid-net.ts';
import { waitFor } from '../helpers/wait.ts';

const NETWORK = 'bench-load-chats';
const MODEL = 'tiny-llama';

export interface ChatResults {
  requests: number;
  gridPeers: number;
  /** 200 with the owner's own answer to the same request (greedy, so it must match). */
  answered: number;
  /** 429 ERR_OVERLOADED: the gateway's limits, not a failure. */
  refused: number;
  /** Any other status, or a 200 with a wrong or empty answer. */
  failed: number;
  failures: string[];
  /** The most requests the gateway said were waiting for a turn, as its 429 bodies tell. */
  peakQueued: number | null;
  /** Latency of the answered requests, send to whole answer, their wait for a turn included. */
  p50Ms: number;
  p99Ms: number;
  /** How soon a refusal came back. */
  refusedP50Ms: number;
  wallMs: number;
}

const quantile = (sorted: number[], q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);

export async function runChats(requests: number, gridPeers: number, log: (line: string) => void): Promise<ChatResults> {
  const net = await startGridNet();
  const grids: Grid[] = [];
  try {
    for (let i = 0; i < gridPeers; i++) await net.peer(NETWORK, `bench-load-peer-${i}`);
    const owner = await connect({ signal: net.server.wsUrl, network: NETWORK, verify: false });
    grids.push(owner);
    await owner.serve({ source: `${net.files.url}/${MODEL}`, modelId: MODEL, replication: gridPeers });
    await waitFor(async () => (await owner.models.list()).data[0]?.health === 'ready', 60_000, `${MODEL} ready`);
    const chat = { model: MODEL, messages: [{ role: 'user' as const, content: 'the quick brown fox' }], max_tokens: 8, temperature: 0 };
    const expected = (await owner.chat.completions.create(chat)).choices[0]!.message.content;
    if (!expected) throw new Error('the owner got an empty answer');

    const grid = await connect({ signal: net.server.wsUrl, network: NETWORK, verify: false });
    grids.push(grid);
    const gateway = await startGateway({ grid, port: 0 }); // the default limits
    log(`chats: ${gridPeers} CPU peers serving ${MODEL} (replication ${gridPeers}); ${requests} requests at once through the gateway`);
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: requests }, async () => {
        const t0 = performance.now();
        try {
          const res = await fetch(`${gateway.url}/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(chat) });
          const body = (await res.json()) as { choices?: { message?: { content?: string } }[]; error?: { code?: string; message?: string } };
          return { status: res.status, ms: performance.now() - t0, content: body.choices?.[0]?.message?.content, error: body.error };
        } catch (err) {
          return { status: 0, ms: performance.now() - t0, content: undefined, error: { code: 'fetch', message: String(err) } };
        }
      }),
    );
    const wallMs = performance.now() - started;
    await gateway.close(0);

    const answered = results.filter((r) => r.status === 200 && r.content === expected);
    const refused = results.filter((r) => r.status === 429);
    const failed = results.filter((r) => !answered.includes(r) && !refused.includes(r));
    const waiting = refused.map((r) => Number(/(\d+) waiting/.exec(r.error?.message ?? '')?.[1])).filter((n) => Number.isFinite(n));
    const ms = answered.map((r) => r.ms).sort((a, b) => a - b);
    const refusedMs = refused.map((r) => r.ms).sort((a, b) => a - b);
    return {
      requests,
      gridPeers,
      answered: answered.length,
      refused: refused.length,
      failed: failed.length,
      failures: failed.slice(0, 5).map((r) => (r.status === 200 ? `200 with ${JSON.stringify(r.content)} (expected ${JSON.stringify(expected)})` : `${r.status} ${r.error?.code}: ${r.error?.message}`)),
      peakQueued: waiting.length > 0 ? Math.max(...waiting) : null,
      p50Ms: quantile(ms, 0.5),
      p99Ms: quantile(ms, 0.99),
      refusedP50Ms: quantile(refusedMs, 0.5),
      wallMs,
    };
  } finally {
    for (const g of grids) g.close();
    await net.close();
  }
}
