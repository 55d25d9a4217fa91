// The CPU backend's quantized linears split over worker threads give, bit for bit, what one thread
// gives: in Node (worker_threads) and in a cross-origin isolated page, whose main thread spins on
// its workers' shares (it may not Atomics.wait). Each output row is one thread's, so no sum is split.
import { GgmlCpuRuntime } from '../../client/model/backend/ggml-linear.ts';
import { GGML_TYPE, type GgmlType } from '../../kernels/ggml-quants.ts';
import { quantizeGgml } from '../fixtures/ggml-quantize.ts';
import { randomFloats, type CaseOutcome, type KernelCase } from './check.ts';

const THREADS = 3;
const FORMATS: [string, GgmlType][] = [['Q8_0', GGML_TYPE.Q8_0], ['Q4_0', GGML_TYPE.Q4_0], ['Q4_K', GGML_TYPE.Q4_K], ['Q6_K', GGML_TYPE.Q6_K]];

async function threadsEqualOne(): Promise<CaseOutcome> {
  // Threshold 0: every call is split, however small.
  const split = await GgmlCpuRuntime.create({ threads: THREADS, parallelThreshold: 0 });
  const one = await GgmlCpuRuntime.create({ threads: 1 });
  try {
    if (!split.simd || split.threads !== THREADS) {
      const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
      return { ok: false, detail: `expected the SIMD kernels on ${THREADS} threads, got simd ${split.simd}, ${split.threads} threads (crossOriginIsolated ${isolated})` };
    }
    const [N, K] = [37, 512];
    for (const [name, type] of FORMATS) {
      const w = { type, rows: N, cols: K, bytes: quantizeGgml(type, randomFloats(type + 1, N * K)) };
      const a = split.place(w), b = one.place(w);
      for (const M of [1, 3, 6]) {
        const x = randomFloats(100 + M, M * K);
        const got = a.forward(x, M), want = b.forward(x, M);
        const at = got.findIndex((v, i) => !Object.is(v, want[i]));
        if (at >= 0) return { ok: false, detail: `${name} M=${M}: element ${at} is ${got[at]} on ${THREADS} threads, ${want[at]} on one` };
      }
    }
    return { ok: true, detail: `${FORMATS.length} formats, M 1/3/6, ${THREADS} threads equal one` };
  } finally {
    split.destroy();
    one.destroy();
  }
}

export const CASES: KernelCase[] = [{ name: `cpu ggml linear: ${THREADS} threads give one thread's values bit for bit`, run: threadsEqualOne }];
