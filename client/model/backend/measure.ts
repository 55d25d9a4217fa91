// Which backend serves faster here, measured rather than assumed from an adapter's presence. The
// work timed is a slice of a decoder layer on the model's real shapes, in the served weight dtype:
// RMSNorm, x [1, hidden] through an [intermediate, hidden] weight, SwiGLU, back through a
// [hidden, intermediate] one, the residual add. A pass of 1 and of REPEATS such slices (chained),
// each the median of a few runs after a warm-up, splits each backend's time into what a pass costs
// whatever it holds (WebGPU's submit and read-back) and what a slice adds; the backend predicted
// faster for a pass over the assigned layers wins. A software adapter simply measures slower: no
// adapter is named here. Results are kept per (adapter, CPU threads, shape, dtype), so a process
// measures each once, and the choice for another number of layers needs no new measuring.
import { AigridError } from '../../../protocol/index.ts';
import { GGML_TYPE, ggmlByteLength, type GgmlBlocks } from '../../../kernels/ggml-quants.ts';
import type { GgmlDType } from '../../../kernels/tensor.ts';
import { CpuBackend } from './cpu.ts';
import { createBackend, type BackendOptions } from './select.ts';
import type { Backend, BackendKind, Tensor, Weight, WeightDtype } from './types.ts';

/** The widths a decode step multiplies by, and how the weights are stored. */
export interface DecodeShape {
  hidden: number;
  intermediate: number;
  /** A float dtype the weights are converted to, or a GGUF file's block format. */
  dtype: WeightDtype | GgmlDType;
}

/** One backend's time for a pass: `fixedMs` whatever it holds, plus `sliceMs` per slice. */
export interface PassCost {
  fixedMs: number;
  sliceMs: number;
}

export interface BackendMeasurement {
  shape: DecodeShape;
  /** [rows, cols] of the slice's two weights (the intermediate side capped: see MAX_MEASURED_VALUES). */
  weights: [[number, number], [number, number]];
  /** The adapter measured ('' when there was none). */
  adapter: string;
  cpu: PassCost | null;
  webgpu: PassCost | null;
  /** Why WebGPU could not be made or run, when it could not. */
  webgpuError?: string;
}

export interface BackendDecision {
  choice: BackendKind;
  /** Slices of the measured work a pass over the assigned layers is worth. */
  slices: number;
  /** Predicted milliseconds of that pass on each backend (null: it could not run). */
  cpuMs: number | null;
  webgpuMs: number | null;
  measurement: BackendMeasurement;
}

/** A backend chosen by measurement: the caller owns it (destroy() when done). */
export interface MeasuredBackend {
  backend: Backend;
  decision: BackendDecision;
}

/** Slices in the longer timed pass. */
const REPEATS = 4;
/** Timed runs of each pass, after one warm-up. */
const RUNS = 5;
/**
 * Values per measured weight at most (16 MiB in f32, past any CPU's private caches): wider layers
 * are measured on fewer intermediate rows, which keeps the probe short and its memory small; the
 * slices per layer count the rest.
 */
const MAX_MEASURED_VALUES = 1 << 22;
/** Results kept (keys come from the models a peer is assigned, so the table is bounded). */
const MAX_RESULTS = 64;
const FLOAT_DTYPES: readonly string[] = ['f32', 'f16', 'q8', 'q4'];
const GGML_TYPES: Record<GgmlDType, GgmlBlocks['type']> = { q8_0: GGML_TYPE.Q8_0, q4_0: GGML_TYPE.Q4_0, q5_0: GGML_TYPE.Q5_0, q4_k: GGML_TYPE.Q4_K, q6_k: GGML_TYPE.Q6_K };

const results = new Map<string, Promise<BackendMeasurement>>();

/**
 * The CPU and, where an adapter is available, WebGPU for a pass over layers that each hold
 * `layerValues` weight values of `shape`: the one predicted faster, the other destroyed. Without an
 * adapter it is the CPU, with nothing measured.
 */
export async function chooseBackend(shape: DecodeShape, layerValues: number, options: BackendOptions = {}): Promise<MeasuredBackend> {
  checkShape(shape);
  const weights = measuredWeights(shape);
  // A pass over the layers is worth this many slices of the measured work (at least one per layer).
  const slices = Math.max(1, layerValues / (2 * weights[0][0] * weights[0][1]));
  const cpu = await CpuBackend.create({ threads: options.threads });
  let gpu: Backend | null = null;
  let webgpuError: string | undefined;
  try {
    gpu = await createBackend('webgpu', options);
  } catch (err) {
    webgpuError = err instanceof Error ? err.message : String(err);
  }
  if (!gpu) {
    const measurement: BackendMeasurement = { shape, weights, adapter: '', cpu: null, webgpu: null, ...(webgpuError ? { webgpuError } : {}) };
    return { backend: cpu, decision: { choice: 'cpu', slices, cpuMs: null, webgpuMs: null, measurement } };
  }
  const key = JSON.stringify([gpu.description, options.threads ?? 0, shape.hidden, shape.intermediate, shape.dtype]);
  let pending = results.get(key);
  if (!pending) {
    pending = measure(cpu, gpu, shape, weights, slices);
    remember(key, pending);
  }
  try {
    const decision = decide(await pending, slices);
    const [winner, loser] = decision.choice === 'webgpu' ? [gpu, cpu] : [cpu, gpu];
    loser.destroy();
    return { backend: winner, decision };
  } catch (err) {
    gpu.destroy();
    cpu.destroy();
    throw err;
  }
}

/** One line for a log or a status detail: the choice and both predicted timings. */
export function describeDecision(d: BackendDecision): string {
  const m = d.measurement;
  if (!m.adapter) return `auto: cpu (no WebGPU adapter${m.webgpuError ? `: ${m.webgpuError}` : ''})`.slice(0, 256);
  const ms = (x: number | null) => (x === null ? 'failed' : `${x.toFixed(2)} ms`);
  const shapes = m.weights.map(([n, k]) => `${n}x${k}`).join(' + ');
  return `auto: ${d.choice} (a pass over its layers: cpu ${ms(d.cpuMs)}, webgpu ${ms(d.webgpuMs)} on ${m.adapter.slice(0, 48)}; measured on ${shapes} ${m.shape.dtype})`.slice(0, 256);
}

function decide(m: BackendMeasurement, slices: number): BackendDecision {
  const predict = (c: PassCost | null) => (c ? c.fixedMs + slices * c.sliceMs : null);
  const [cpuMs, webgpuMs] = [predict(m.cpu), predict(m.webgpu)];
  const choice: BackendKind = webgpuMs !== null && (cpuMs === null || webgpuMs < cpuMs) ? 'webgpu' : 'cpu';
  return { choice, slices, cpuMs, webgpuMs, measurement: m };
}

async function measure(cpu: Backend, gpu: Backend, shape: DecodeShape, weights: BackendMeasurement['weights'], slices: number): Promise<BackendMeasurement> {
  // One at a time, so neither competes with the other for the machine.
  const cpuRun = await attempt(() => timePasses(cpu, shape, weights));
  // WebGPU loses outright once one slice takes longer than the CPU's whole pass over the layers.
  const beat = cpuRun.cost ? cpuRun.cost.fixedMs + slices * cpuRun.cost.sliceMs : Infinity;
  const gpuRun = await attempt(() => timePasses(gpu, shape, weights, beat));
  // Neither ran it: the weights themselves cannot serve here, and the CPU's error says why.
  if (!cpuRun.cost && !gpuRun.cost) throw cpuRun.thrown;
  return { shape, weights, adapter: gpu.description, cpu: cpuRun.cost, webgpu: gpuRun.cost, ...(gpuRun.error ? { webgpuError: gpuRun.error } : {}) };
}

async function attempt(run: () => Promise<PassCost>): Promise<{ cost: PassCost | null; error?: string; thrown?: unknown }> {
  try {
    return { cost: await run() };
  } catch (err) {
    return { cost: null, error: err instanceof Error ? err.message : String(err), thrown: err };
  }
}

/**
 * A backend's pass cost from passes of 1 and REPEATS slices. `beat`: once most runs of one slice
 * are slower than this, the backend has lost for any pass (a pass holds at least one slice) and
 * the longer pass is not timed: its cost is then that of one slice, all of it counted per slice.
 */
async function timePasses(backend: Backend, shape: DecodeShape, weights: BackendMeasurement['weights'], beat = Infinity): Promise<PassCost> {
  const [[n, k], [n2, k2]] = weights;
  const made: (Weight | Tensor)[] = [];
  try {
    const up = weightOf(backend, n, k, shape.dtype, 'measure/up');
    made.push(up);
    const down = weightOf(backend, n2, k2, shape.dtype, 'measure/down');
    made.push(down);
    const norm = backend.constant(values(shape.hidden, 3, 1), [shape.hidden], 'measure/norm');
    made.push(norm);
    await backend.settle();
    const x = values(shape.hidden, 7);
    const pass = (repeats: number) =>
      backend.run((ops) => {
        let h = ops.input(x, [1, shape.hidden]);
        for (let r = 0; r < repeats; r++) {
          const u = ops.linear(ops.rmsNorm(h, norm, 1e-5), up);
          h = ops.add(h, ops.linear(ops.swiglu(u, u), down));
        }
        return h;
      });
    const one = await median(() => pass(1), beat);
    if (one > beat) return { fixedMs: 0, sliceMs: one };
    const many = await median(() => pass(REPEATS));
    // Noise can make the longer pass look barely longer (then slices would seem free): a slice is
    // taken to cost at least half its share of the longer pass.
    const sliceMs = Math.max((many - one) / (REPEATS - 1), many / REPEATS / 2);
    return { fixedMs: Math.max(0, one - sliceMs), sliceMs };
  } finally {
    for (const item of made) backend.dispose(item);
  }
}

/** Median ms of RUNS runs after a warm-up, stopping early once most are slower than `beat`. */
async function median(run: () => Promise<unknown>, beat = Infinity): Promise<number> {
  await run();
  const times: number[] = [];
  for (let r = 0; r < RUNS && times.filter((t) => t > beat).length <= RUNS >> 1; r++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  const sorted = times.sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** [intermediate, hidden] and [hidden, intermediate], the intermediate side capped at MAX_MEASURED_VALUES. */
function measuredWeights(shape: DecodeShape): BackendMeasurement['weights'] {
  const block = Object.hasOwn(GGML_TYPES, shape.dtype) ? 256 : 32; // whole blocks along either side
  const fit = Math.floor(MAX_MEASURED_VALUES / shape.hidden / block) * block;
  const rows = Math.min(shape.intermediate, Math.max(block, fit));
  return [
    [rows, shape.hidden],
    [shape.hidden, rows],
  ];
}

function weightOf(backend: Backend, n: number, k: number, dtype: DecodeShape['dtype'], label: string): Weight {
  const ggml = Object.hasOwn(GGML_TYPES, dtype) ? GGML_TYPES[dtype as GgmlDType] : undefined;
  if (ggml === undefined) return backend.weight(values(n * k, 1), [n, k], dtype as WeightDtype, label);
  // Every byte 0x11: finite, normal scales in each block format (no NaN or subnormal slow paths).
  const bytes = new Uint8Array(ggmlByteLength(ggml, n * k)).fill(0x11);
  return backend.quantizedWeight({ type: ggml, rows: n, cols: k, bytes }, label);
}

/** Reproducible values in [center - 0.05, center + 0.05), cheap to make by the million. */
function values(count: number, seed: number, center = 0): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = center + ((Math.imul(i + seed, 2654435761) >>> 0) / 2 ** 32 - 0.5) * 0.1;
  return out;
}

function remember(key: string, pending: Promise<BackendMeasurement>): void {
  if (results.size >= MAX_RESULTS) results.delete(results.keys().next().value!);
  results.set(key, pending);
  pending.catch(() => {
    if (results.get(key) === pending) results.delete(key); // a failure is tried again next time
  });
}

function checkShape(shape: DecodeShape): void {
  const dim = (x: number) => Number.isSafeInteger(x) && x >= 1 && x <= 1 << 20;
  if (!dim(shape.hidden) || !dim(shape.intermediate)) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `a decode shape needs whole hidden and intermediate sizes in [1, 2^20], got ${shape.hidden} and ${shape.intermediate}`);
  }
  if (!FLOAT_DTYPES.includes(shape.dtype) && !Object.hasOwn(GGML_TYPES, shape.dtype)) {
    throw new AigridError('ERR_INVALID_ARGUMENT', `cannot measure weights of dtype ${JSON.stringify(shape.dtype)}`);
  }
}
