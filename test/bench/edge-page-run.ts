// bench:edge's page comparison, the Node side: our CPU backend against @wllama/wllama (llama.cpp
// compiled to WebAssembly, its multi-thread build) on the same GGUF files in one Chromium page
// (edge-page.ts). The page comes from a vite dev server on 127.0.0.1 with the cross-origin
// isolation headers (COOP same-origin, COEP require-corp), so SharedArrayBuffer, our WebAssembly
// SIMD kernels with their worker threads and wllama's pthreads all work; the GGUF files come over
// HTTP Range requests from a second local server. @wllama/wllama is not a dependency of the project:
// it is installed on first use into test/.fixtures/bench/wllama and served to the page from there.
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Page } from 'puppeteer-core';
import { createServer } from 'vite';
import { launchChromium, openPage } from '../helpers/chromium.ts';
import { startRangeServer } from '../helpers/range-server.ts';
import { installOnFirstUse } from './bench-packages.ts';
import { agreement, geomean, measureTurns, promptIds, round, type Generation, type Runner } from './edge-measure.ts';
import type { EdgePageApi, PageLoadRequest, PageLoaded, PageRunnerKind } from './edge-page.ts';
import { BENCH_DIR, randomGguf, type RandomGgufType } from './gguf-random.ts';

// 2.x: its low-level API (decode, samplingSample, samplingAccept) takes token ids; 3.x only completes text.
export const WLLAMA_VERSION = '2.3.7';
const WLLAMA_PREFIX = join(BENCH_DIR, 'wllama');
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface PageBenchFile {
  type: RandomGgufType;
  /** The GGUF file; it must lie in BENCH_DIR. */
  path: string;
  vocab: number;
}

export interface PageBenchOptions {
  /** One shape's files, one per type. */
  shape: string;
  files: PageBenchFile[];
  threadCounts: number[];
  runs: number;
  decode: number;
  prefill: number;
  log: (line: string) => void;
}

export interface PageBenchRow {
  shape: string;
  type: RandomGgufType;
  runner: string;
  load_s: number | null;
  prefill_tok_s: number | null;
  decode_tok_s: number | null;
  same_tokens: string;
  detail: string;
}

export interface PageBenchResult {
  rows: PageBenchRow[];
  /** ours / wllama decode tok/s per type, keyed by thread count. */
  decodeRatios: Map<number, Map<RandomGgufType, number>>;
  crossOriginIsolated: boolean;
}

type Api = { edge: EdgePageApi };

/** A runner of the page, driven through puppeteer; its clocks are the page's (or its worker's). */
async function pageRunner(page: Page, request: PageLoadRequest): Promise<{ loaded: PageLoaded; runner: Runner }> {
  const loaded = await page.evaluate((req) => (window as unknown as Api).edge.load(req), request);
  const runner: Runner = {
    async generate(prompt, newTokens): Promise<Generation> {
      const g = await page.evaluate((id, p, n) => (window as unknown as Api).edge.generate(id, p, n), loaded.id, [...prompt], newTokens);
      return { tokens: g.tokens, at: g.at };
    },
    close: () => page.evaluate((id) => (window as unknown as Api).edge.close(id), loaded.id),
  };
  return { loaded, runner };
}

/** Runs the page comparison; throws only when the page cannot be set up at all. */
export async function runPageBench(options: PageBenchOptions): Promise<PageBenchResult> {
  const { shape, files, threadCounts, runs, decode, prefill, log } = options;
  const wllamaDir = installOnFirstUse({ name: '@wllama/wllama', version: WLLAMA_VERSION, prefix: WLLAMA_PREFIX }, log);
  const wllamaUrl = `/${relative(ROOT, join(wllamaDir, 'node_modules', '@wllama', 'wllama', 'esm')).split(/[\\/]/).join('/')}/`;
  const ggufs = await startRangeServer(BENCH_DIR);
  const vite = await createServer({
    configFile: false,
    root: ROOT,
    logLevel: 'error',
    appType: 'mpa',
    server: {
      host: '127.0.0.1', port: 0, hmr: false, watch: null,
      // Cross-origin isolation: SharedArrayBuffer, and so shared WebAssembly memory and threads.
      headers: { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' },
    },
    optimizeDeps: { noDiscovery: true, include: [] },
  });
  await vite.listen();
  const port = (vite.httpServer!.address() as { port: number }).port;
  const chromium = await launchChromium();
  const rows: PageBenchRow[] = [];
  const decodeRatios = new Map<number, Map<RandomGgufType, number>>();
  try {
    const { page, errors } = await openPage(chromium.browser, `http://127.0.0.1:${port}/test/bench/edge-page.html`);
    page.setDefaultTimeout(0);
    await page.waitForFunction(() => document.title === 'ready', { timeout: 120_000 });
    const env = await page.evaluate(() => (window as unknown as Api).edge.environment());
    log(`page: crossOriginIsolated ${env.crossOriginIsolated}, SharedArrayBuffer ${env.sharedArrayBuffer}, ${env.cores} cores; ${env.userAgent}`);
    if (!env.crossOriginIsolated) log('page: NOT cross-origin isolated: no shared memory, so our CPU backend runs plain JS on one thread and wllama its single-thread build');
    for (const file of files) {
      const tag = `${shape} ${file.type}`;
      const ggufUrl = `${ggufs.url}/${relative(BENCH_DIR, file.path).split(/[\\/]/).join('/')}`;
      log(`\npage, ${tag}: prompt 16 + ${decode} decoded tokens, prefill ${prefill} tokens, median of ${runs} runs`);
      for (const threads of threadCounts) {
        const named: { name: string; kind: PageRunnerKind; loaded: PageLoaded; runner: Runner }[] = [];
        try {
          for (const kind of ['ours', 'wllama'] as const) {
            const name = `${kind === 'ours' ? 'ours (page cpu)' : `wllama ${WLLAMA_VERSION}`} ${threads}t`;
            try {
              const r = await pageRunner(page, { runner: kind, ggufUrl, threads, wllamaUrl, contextSize: 512 });
              named.push({ name, kind, ...r });
              log(`  ${name}: loaded in ${(r.loaded.loadMs / 1000).toFixed(1)} s; ${r.loaded.detail}`);
            } catch (err) {
              log(`  ${name} cannot run ${tag}: ${(err as Error).message.split('\n')[0]!.slice(0, 300)}`);
              rows.push({ shape, type: file.type, runner: name, load_s: null, prefill_tok_s: null, decode_tok_s: null, same_tokens: 'failed', detail: '' });
            }
          }
          if (!named.length) continue;
          let figures;
          try {
            // WebAssembly tiers up (baseline code first, optimized code compiled in the background):
            // a run long enough to reach the optimized code before anything is timed.
            for (const n of named) await n.runner.generate(promptIds(16, file.vocab, 2), 16);
            figures = await measureTurns(named.map((n) => n.runner), file.vocab, runs, decode, prefill);
          } catch (err) {
            log(`  page, ${tag}, ${threads} thread(s) failed: ${(err as Error).message.split('\n')[0]!.slice(0, 300)}`);
            if (errors.length) log(`  page errors: ${errors.splice(0).slice(-5).join(' | ').slice(0, 2000)}`);
            continue;
          }
          const ours = named.findIndex((n) => n.kind === 'ours');
          const theirs = named.findIndex((n) => n.kind === 'wllama');
          for (const [i, n] of named.entries()) {
            const f = figures[i]!;
            const other = i === ours ? figures[theirs] : figures[ours];
            rows.push({
              shape, type: file.type, runner: n.name, load_s: round(n.loaded.loadMs / 1000, 1), prefill_tok_s: round(f.prefillTokS),
              decode_tok_s: round(f.decodeTokS),
              same_tokens: other ? `${agreement(f.tokens, other.tokens)}/${Math.min(f.tokens.length, other.tokens.length)}` : '-', detail: n.loaded.detail,
            });
          }
          if (ours >= 0 && theirs >= 0) {
            const ratio = figures[ours]!.decodeTokS / figures[theirs]!.decodeTokS;
            if (!decodeRatios.has(threads)) decodeRatios.set(threads, new Map());
            decodeRatios.get(threads)!.set(file.type, ratio);
            log(`page, ${tag}, ${threads} thread(s): ours / wllama: decode ${ratio.toFixed(3)}, prefill ${(figures[ours]!.prefillTokS / figures[theirs]!.prefillTokS).toFixed(3)}; ` +
              `same tokens ${agreement(figures[ours]!.tokens, figures[theirs]!.tokens)}/${figures[ours]!.tokens.length}`);
          }
        } finally {
          for (const n of named) await n.runner.close().catch(() => {});
        }
      }
    }
    if (errors.length) log(`page errors: ${errors.slice(0, 5).join(' | ').slice(0, 2000)}`);
    return { rows, decodeRatios, crossOriginIsolated: env.crossOriginIsolated };
  } finally {
    await chromium.close();
    await vite.close();
    await ggufs.close();
  }
}

/** The page comparison alone: node --import ./bin/register.js test/bench/edge-page-run.ts (bench:edge's environment). */
async function main(): Promise<void> {
  const { SMOLLM2_135M } = await import('./edge.ts');
  const log = (line: string) => console.log(line);
  const types = (process.env.AIGRID_BENCH_TYPES ?? 'Q8_0,Q4_K_M').split(',') as RandomGgufType[];
  const threadCounts = (process.env.AIGRID_BENCH_THREADS ?? '1,2').split(',').map(Number);
  const result = await runPageBench({
    shape: SMOLLM2_135M.name,
    files: types.map((type) => ({ type, path: randomGguf(SMOLLM2_135M, type, { log }), vocab: SMOLLM2_135M.vocab })),
    threadCounts, runs: Math.max(1, Number(process.env.AIGRID_BENCH_RUNS ?? 3)),
    decode: Number(process.env.AIGRID_BENCH_DECODE ?? 32), prefill: Number(process.env.AIGRID_BENCH_PREFILL ?? 128), log,
  });
  console.table(result.rows);
  const top = Math.max(0, ...result.decodeRatios.keys());
  console.log(`RESULT ${JSON.stringify({ pageDecodeVsWllama: round(geomean([...(result.decodeRatios.get(top)?.values() ?? [])]), 3), threads: top })}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
