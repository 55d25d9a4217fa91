import type { GpuContext } from '../../kernels/context.ts';
import { argmaxRef, keptWeights, pcg, sampleDistribution, sampleRef, sampleUniform, type SampleOptions } from '../../kernels/cpu/sample.ts';
import { SampleOp } from '../../kernels/sample.ts';
import { mulberry32 } from '../helpers/random.ts';
import { all, expectCode, randomFloats, submit, type CaseOutcome, type KernelCase } from './check.ts';

interface Draw {
  logits: Float32Array;
  options: SampleOptions;
}

/** Runs every draw in one submit (each token copied out in turn) and returns the GPU's tokens. */
async function gpuTokens(ctx: GpuContext, draws: Draw[], op = new SampleOp(ctx)): Promise<Uint32Array> {
  const results = ctx.tensor([draws.length], 'u32');
  const token = ctx.tensor([1], 'u32');
  const tensors = new Map<Float32Array, ReturnType<GpuContext['tensor']>>();
  submit(ctx, (e) => {
    for (const [i, d] of draws.entries()) {
      let logits = tensors.get(d.logits);
      if (!logits) tensors.set(d.logits, (logits = ctx.tensor([d.logits.length], 'f32', d.logits)));
      op.run(e, logits, token, d.options);
      e.copyBufferToBuffer(token.buffer, 0, results.buffer, i * 4, 4);
    }
  });
  return (await ctx.read(results)) as Uint32Array;
}

/** Distinct logits in [lo, hi): a shuffled even spread, so no two tokens are near-ties. */
function distinctLogits(seed: number, n: number, lo = -6, hi = 6): Float32Array {
  const rand = mulberry32(seed);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return Float32Array.from(order, (r) => lo + ((hi - lo) * (r + 0.5 * rand())) / n);
}

/** How close the top-p cut or the draw comes to a boundary (relative mass); f32 vs f64 may differ below ~1e-6. */
function margin(logits: Float32Array, options: SampleOptions): number {
  const onlyK = sampleDistribution(logits, { ...options, topP: 1 });
  let best = Infinity;
  if ((options.topP ?? 1) < 1) {
    const sorted = [...onlyK].filter((p) => p > 0).sort((a, b) => b - a);
    let cum = 0;
    for (const p of sorted) best = Math.min(best, Math.abs((cum += p) - options.topP!));
  }
  const u = sampleUniform(options.seed ?? 0, options.step ?? 0);
  let cum = 0;
  for (const p of sampleDistribution(logits, options)) if (p > 0) best = Math.min(best, Math.abs((cum += p) - u));
  return best;
}

/** GPU tokens equal the reference away from knife edges and always lie in the keep set. */
function compare(draws: Draw[], got: Uint32Array): CaseOutcome {
  let edges = 0;
  for (const [i, d] of draws.entries()) {
    const token = got[i]!;
    const want = sampleRef(d.logits, d.options);
    const kept = keptWeights(d.logits, d.options);
    const where = `draw ${i} (V ${d.logits.length}, ${JSON.stringify(d.options)})`;
    if (!(token < d.logits.length && kept[token]! > 0)) return { ok: false, detail: `${where}: token ${token} outside the keep set` };
    if (token === want) continue;
    if (margin(d.logits, d.options) < 1e-5) edges++;
    else return { ok: false, detail: `${where}: GPU ${token}, reference ${want}` };
  }
  return { ok: edges <= draws.length / 20, detail: `${draws.length} draws, ${edges} differ on a knife edge` };
}

export const CASES: KernelCase[] = [
  {
    name: 'sample: temperature 0 and topK 1 pick the argmax (lowest index on ties)',
    async run(ctx) {
      const draws: Draw[] = [];
      for (const [i, n] of [1, 2, 7, 300, 5000, 70_001].entries()) {
        const logits = randomFloats(500 + i, n, -10, 10);
        draws.push({ logits, options: { temperature: 0, seed: i } }, { logits, options: { topK: 1, temperature: 2, seed: i } });
      }
      const tied = new Float32Array(600).fill(-1);
      tied[5] = tied[9] = tied[599] = 3;
      draws.push({ logits: tied, options: { temperature: 0 } }, { logits: tied, options: { topK: 1 } });
      const got = await gpuTokens(ctx, draws);
      const bad = draws.findIndex((d, i) => got[i] !== argmaxRef(d.logits));
      return {
        ok: bad < 0 && got[got.length - 1] === 5 && argmaxRef(tied) === 5,
        detail: bad < 0 ? `${draws.length} greedy draws, ties -> ${got[got.length - 1]}` : `draw ${bad}: ${got[bad]} != ${argmaxRef(draws[bad]!.logits)}`,
      };
    },
  },
  {
    name: 'sample: GPU picks the reference token for seeded logits, options, seeds and steps',
    async run(ctx) {
      const rand = mulberry32(600);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
      const draws: Draw[] = [];
      for (let i = 0; i < 90; i++) {
        const n = pick([1, 2, 3, 10, 64, 257, 1000, 4099]);
        const options = {
          temperature: pick([0.3, 0.7, 1, 1.6]),
          topK: pick([0, 0, 2, 5, 40, n + 3]),
          topP: pick([1, 1, 0.95, 0.8, 0.5, 0.1]),
          seed: Math.floor(rand() * 2 ** 32),
          step: Math.floor(rand() * 2 ** 32),
        };
        draws.push({ logits: distinctLogits(700 + i, n), options });
      }
      // Vocabulary-sized draws: many threads' chunks, thresholds deep in the key range.
      const vocab = distinctLogits(799, 32_000, -12, 12);
      for (const [topK, topP] of [[0, 0.9], [50, 1], [40, 0.7], [0, 1]] as const) {
        draws.push({ logits: vocab, options: { temperature: 0.8, topK, topP, seed: 99, step: topK } });
      }
      return compare(draws, await gpuTokens(ctx, draws));
    },
  },
  {
    name: 'sample: tied logits are kept or dropped together; tokens stay in the keep set',
    async run(ctx) {
      const rand = mulberry32(800);
      const levels = [-3, -1, 0, 0.5, 1.25, 2];
      const logits = Float32Array.from({ length: 500 }, () => levels[Math.floor(rand() * levels.length)]!);
      const draws: Draw[] = [];
      for (let step = 0; step < 40; step++) {
        draws.push({ logits, options: { temperature: 0.9, topK: 3, seed: 1, step } });
        draws.push({ logits, options: { temperature: 1.1, topP: 0.6, seed: 2, step } });
      }
      const keptByK = keptWeights(logits, draws[0]!.options).filter((w) => w > 0).length;
      const top = logits.filter((x) => x === 2).length;
      return all([
        { ok: keptByK === top, detail: `topK 3 keeps all ${top} tied at the top` },
        compare(draws, await gpuTokens(ctx, draws)),
      ]);
    },
  },
  {
    name: 'sample: 1000 steps follow the renormalized top-k / top-p distribution',
    async run(ctx) {
      const logits = Float32Array.from([0.2, 1.9, -0.7, 1.3, 0.6, 2.4, -2, 1.0, 0.1, 1.6]);
      const options = { temperature: 0.9, topK: 7, topP: 0.9, seed: 1234 };
      const steps = 1000;
      const draws = Array.from({ length: steps }, (_, step) => ({ logits, options: { ...options, step } }));
      // A small workgroup keeps 1000 dispatches quick on SwiftShader; the other cases use the default.
      const got = await gpuTokens(ctx, draws, new SampleOp(ctx, { workgroupSize: 64 }));
      const want = sampleDistribution(logits, options);
      const counts = new Array<number>(logits.length).fill(0);
      for (const t of got) counts[t]!++;
      const outcomes = counts.map((c, i) => {
        const p = want[i]!;
        const bound = 4 * Math.sqrt((p * (1 - p)) / steps) + 0.01;
        return { ok: p === 0 ? c === 0 : Math.abs(c / steps - p) <= bound, detail: `token ${i}: ${c / steps} vs ${p.toFixed(3)}` };
      });
      return all([...outcomes, compare(draws, got)]);
    },
  },
  {
    name: 'sample: the hash recipe is pinned; bad options, shapes and dtypes are named errors',
    async run(ctx) {
      const op = new SampleOp(ctx);
      const logits = ctx.tensor([8], 'f32');
      const token = ctx.tensor([1], 'u32');
      const bad = (options: SampleOptions) => expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.run(e, logits, token, options)));
      const u = sampleUniform(0, 0);
      return all([
        { ok: pcg(0) === 129708002 && pcg(1) === 2831084092, detail: `pcg(0) ${pcg(0)}, pcg(1) ${pcg(1)}` },
        { ok: u >= 0 && u < 1 && u * 2 ** 24 === pcg(pcg(0)) >>> 8, detail: `u(0, 0) ${u}` },
        await bad({ temperature: -1 }),
        await bad({ temperature: Infinity }),
        await bad({ topP: 0 }),
        await bad({ topP: 1.5 }),
        await bad({ topK: 1.5 }),
        await bad({ seed: -1 }),
        await bad({ step: 2 ** 32 }),
        await expectCode('ERR_INVALID_ARGUMENT', () => submit(ctx, (e) => op.run(e, ctx.tensor([0], 'f32'), token))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, ctx.tensor([2, 4], 'f32'), token))),
        await expectCode('ERR_SHAPE_MISMATCH', () => submit(ctx, (e) => op.run(e, logits, ctx.tensor([2], 'u32')))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, logits, ctx.tensor([1], 'f32')))),
        await expectCode('ERR_DTYPE_UNSUPPORTED', () => submit(ctx, (e) => op.run(e, ctx.tensor([8], 'u32'), token))),
        await expectCode('ERR_INVALID_ARGUMENT', () => new SampleOp(ctx, { workgroupSize: 100 })),
        await expectCode('ERR_GPU_LIMIT', () => new SampleOp(ctx, { workgroupSize: 1 << 16 })),
      ]);
    },
  },
];
