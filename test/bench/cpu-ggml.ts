// node --import ./bin/register.js test/bench/cpu-ggml.ts — decode matvecs (one row of x) of the
// CPU backend's GGML linear (ggml-linear.ts) on [N, K] = [2048, 2048] and [8192, 2048] per format,
// with 1 and 2 threads, against the f32 SIMD kernel of cpu-linear.ts (one thread: it has no
// workers) on the same shape. GB/s counts the weight bytes of the file (a GGUF tensor's size) read
// per call; `vs f32` is the f32 kernel's time over ours. Not run in CI. AIGRID_BENCH_SECONDS (default
// 0.5) sets the time per measurement. Last line: RESULT {json}.
import { linearFast, placeWeight, releaseWeight } from '../../client/model/backend/cpu-linear.ts';
import { GgmlCpuRuntime } from '../../client/model/backend/ggml-linear.ts';
import { GGML_TYPE, type GgmlType } from '../../kernels/ggml-quants.ts';
import { quantizeGgml } from '../fixtures/ggml-quantize.ts';
import { mulberry32 } from '../helpers/random.ts';

const SHAPES: [number, number][] = [[2048, 2048], [8192, 2048]];
const FORMATS: [string, GgmlType][] = [['Q8_0', GGML_TYPE.Q8_0], ['Q4_0', GGML_TYPE.Q4_0], ['Q4_K', GGML_TYPE.Q4_K], ['Q6_K', GGML_TYPE.Q6_K]];
const THREADS = [1, 2];
const SECONDS = Number(process.env.AIGRID_BENCH_SECONDS ?? 0.5);

/** Median milliseconds per call over about SECONDS of calls, after a warm-up (the compiler tiers up). */
function timeCall(fn: () => void): number {
  for (let i = 0; i < 10; i++) fn();
  const times: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  while (performance.now() < end || times.length < 5) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}

const rand = mulberry32(2048);
const values = Float32Array.from({ length: 2048 * 2048 }, () => (rand() * 2 - 1) * 0.05);
const x = Float32Array.from({ length: 2048 }, () => rand() * 2 - 1);
/** The quantized bytes of [2048, 2048]: taller shapes repeat them (the values do not change the speed). */
const quantized = new Map(FORMATS.map(([name, type]) => [name, quantizeGgml(type, values)]));

function rowsRepeated(bytes: Uint8Array, times: number): Uint8Array {
  const out = new Uint8Array(bytes.length * times);
  for (let i = 0; i < times; i++) out.set(bytes, i * bytes.length);
  return out;
}

const runtimes = new Map<number, GgmlCpuRuntime>();
for (const threads of THREADS) runtimes.set(threads, await GgmlCpuRuntime.create({ threads }));

interface Row { shape: string; format: string; threads: number; ms: number; gbps: number; vsF32: number }
const rows: Row[] = [];
const f32Ms: Record<string, number> = {};
for (const [N, K] of SHAPES) {
  const shape = `${N}x${K}`;
  const f32Values = new Float32Array(N * K);
  for (let r = 0; r < N; r += 2048) f32Values.set(values, r * K);
  const f32 = placeWeight(f32Values, N, K);
  f32Ms[shape] = timeCall(() => linearFast(x, 1, K, f32, N));
  releaseWeight(f32);
  console.log(`[${N}, ${K}] f32 (cpu-linear, 1 thread): ${f32Ms[shape]!.toFixed(3)} ms, ${((N * K * 4) / f32Ms[shape]! / 1e6).toFixed(2)} GB/s`);
  for (const [name, type] of FORMATS) {
    const bytes = rowsRepeated(quantized.get(name)!, N / 2048);
    for (const threads of THREADS) {
      const linear = runtimes.get(threads)!.place({ type, rows: N, cols: K, bytes });
      const ms = timeCall(() => linear.forward(x, 1));
      linear.destroy();
      const row = { shape, format: name, threads, ms, gbps: bytes.length / ms / 1e6, vsF32: f32Ms[shape]! / ms };
      rows.push(row);
      console.log(`[${N}, ${K}] ${name} ${threads} thread${threads > 1 ? 's' : ' '}: ${ms.toFixed(3)} ms, ${row.gbps.toFixed(2)} GB/s, ${row.vsF32.toFixed(2)}x f32`);
    }
  }
}
for (const runtime of runtimes.values()) runtime.destroy();

const round = (v: number, digits: number) => Number(v.toFixed(digits));
const result = {
  f32Ms: Object.fromEntries(Object.entries(f32Ms).map(([k, v]) => [k, round(v, 3)])),
  rows: rows.map((r) => ({ ...r, ms: round(r.ms, 3), gbps: round(r.gbps, 2), vsF32: round(r.vsF32, 2) })),
};
console.log(`RESULT ${JSON.stringify(result)}`);
