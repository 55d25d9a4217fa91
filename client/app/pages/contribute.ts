// Contribute: what this tab's GPU can do (adapter, limits, a benchmark), a memory budget, and
// Start/Stop around grid.contribute() (which joins a serving peer of its own), with the assignment,
// download progress, tokens served and uptime while it runs.
import type { BackendChoice } from '../../model/backend/select.ts';
import type { Contribution, LoadingProgress, ServingStatus } from '../../sdk/index.ts';
import { connection, onConnection, serveWith } from '../connection.ts';
import { $, errorText, formatBytes, formatDuration, layersText, row } from '../dom.ts';
import { benchmark, isByteLimit, KEY_LIMITS, probeGpu, type Benchmark, type GpuProbe } from '../gpu-probe.ts';
import { joinFromBar } from '../header.ts';
import type { Page } from '../router.ts';
import { creditCalls } from '../../sdk/credits-calls.ts';
import { CreditsLine } from '../credits-line.ts';

let probe: Promise<GpuProbe> | null = null;
let bench: Benchmark | null = null;
let contribution: Contribution | null = null;
let ticker: ReturnType<typeof setInterval> | undefined;
/** The contributing peer's own balance (its key is not the tab client's). */
let credits: CreditsLine | undefined;

async function showGpu(): Promise<void> {
  const found = await (probe ??= probeGpu());
  if (!found.gpu) {
    $('gpu-status').textContent = `No WebGPU: ${found.reason} Contributing still works: this tab will run its layers on the CPU fallback, more slowly.`;
    $('gpu-status').className = 'warning';
    return;
  }
  const { info } = found;
  $('gpu-status').textContent = `WebGPU adapter found${info.isFallbackAdapter ? ' (a software fallback adapter: expect CPU speeds)' : ''}.`;
  $('adapter-vendor').textContent = info.vendor || '–';
  $('adapter-architecture').textContent = info.architecture || '–';
  $('adapter-description').textContent = info.description || info.device || '–';
  $('adapter').hidden = false;
  const body = $('limits').querySelector('tbody')!;
  body.replaceChildren(
    ...KEY_LIMITS.map((name) => {
      const value = info.limits[name] ?? NaN;
      return row([name, isByteLimit(name) ? `${formatBytes(value)} (${value})` : String(value)], { 'data-limit': name });
    }),
  );
  $('limits').hidden = false;
}

async function runBenchmark(): Promise<void> {
  const button = $<HTMLButtonElement>('bench-run');
  button.disabled = true;
  $('bench-result').textContent = 'Running a short matmul benchmark…';
  try {
    const found = await (probe ??= probeGpu());
    bench = await benchmark(found);
    const gpu = bench.gpuGflops !== undefined ? `WebGPU: ${bench.gpuGflops} GFLOP/s` : 'WebGPU: none';
    $('bench-result').textContent = `${gpu} · CPU: ${bench.cpuGflops} GFLOP/s (${bench.n}×${bench.n}×${bench.n} f32 matmul, best of several runs)`;
  } catch (err) {
    $('bench-result').textContent = `The benchmark failed: ${errorText(err)}`;
  } finally {
    button.disabled = false;
  }
}

async function start(): Promise<void> {
  const budget = Number($<HTMLInputElement>('budget').value);
  const backend = $<HTMLSelectElement>('backend').value as BackendChoice;
  const { grid, mesh } = connection() ?? (await joinFromBar());
  // The coordinator shares layers by measured speed: the serving peer joins with the client's
  // capabilities, so announce there what this tab will serve with.
  const gpuGflops = bench?.gpuGflops;
  if (backend !== 'cpu' && gpuGflops !== undefined) {
    mesh.updateCapabilities({ ...mesh.signaling.capabilities, throughput: { gflops: gpuGflops, backend: 'webgpu' } });
  }
  const started = await grid.contribute({ memoryBudgetMB: budget, backend });
  contribution = started;
  serveWith({ stop: () => started.stop() });
  started.on('status', () => renderStatus());
  started.on('progress', renderProgress);
  started.on('stopped', () => stopped(started));
  $('contribution-peer').textContent = started.peerId;
  credits?.follow(creditCalls(() => started.peer.mesh.signaling));
  const on = backend === 'cpu' || !(await probe)?.gpu ? 'the CPU' : 'WebGPU';
  $('contribution-state').textContent = `Contributing ${budget} MB on ${on}. Waiting for the coordinator to assign layers (it does once a model is served and needs them).`;
  clearInterval(ticker);
  ticker = setInterval(renderStatus, 1000);
  renderStatus();
}

function stopped(which: Contribution): void {
  if (contribution !== which) return;
  contribution = null;
  clearInterval(ticker);
  setRunning(false);
  $('contribution-state').textContent = 'Not contributing.';
  $('contribution-peer').textContent = '–';
  credits?.follow(null);
  $('download').hidden = true;
  $('assignment').querySelector('tbody')!.replaceChildren();
}

function setRunning(running: boolean): void {
  $<HTMLButtonElement>('start').disabled = running;
  $<HTMLButtonElement>('stop').disabled = !running;
}

function renderStatus(): void {
  const c = contribution;
  if (!c) return;
  const statuses = c.status();
  $('assignment').querySelector('tbody')!.replaceChildren(...statuses.map(statusRow));
  if (statuses.length) {
    const models = statuses.map((s) => `${s.modelId} ${layersText(s.start, s.end)}`).join(', ');
    $('contribution-state').textContent = `Serving ${models}.`;
  }
  $('tokens-served').textContent = String(c.tokensServed);
  $('uptime').textContent = formatDuration(c.uptimeS);
}

function statusRow(s: ServingStatus): HTMLTableRowElement {
  const state = s.detail ? `${s.state}: ${s.detail}` : s.state;
  const attrs = { 'data-model': s.modelId, 'data-start': String(s.start), 'data-end': String(s.end) };
  const tr = row([s.modelId, layersText(s.start, s.end), state, String(s.sessions), String(s.tokensServed)], attrs);
  tr.cells[2]!.className = `state-${s.state}`;
  return tr;
}

function renderProgress(p: LoadingProgress): void {
  const bar = $<HTMLProgressElement>('download-bar');
  bar.max = Math.max(p.bytesTotal, 1);
  bar.value = p.bytesDone;
  $('download-text').textContent = `${p.modelId} ${layersText(p.start, p.end)}: ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}`;
  $('download').hidden = false;
}

let shownOnce = false;

export const contributePage: Page = {
  show() {
    if (shownOnce) return;
    shownOnce = true;
    void showGpu().then(runBenchmark);
  },
  hide() {},
};

export function startContribute(): void {
  credits = new CreditsLine($('tokens-served').parentElement!, 'contribution-credits');
  $('bench-run').addEventListener('click', () => void runBenchmark());
  $('contribute-form').addEventListener('submit', (event) => {
    event.preventDefault();
    setRunning(true);
    start().catch((err) => {
      setRunning(false);
      $('contribution-state').textContent = `Could not start: ${errorText(err)}`;
    });
  });
  $('stop').addEventListener('click', () => contribution?.stop());
  // A leave stops the contribution (the Grid closes); the page follows.
  onConnection((c) => {
    if (!c && contribution) stopped(contribution);
  });
}
